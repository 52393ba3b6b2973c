/*
 * test-big: a 50 MB message is saved through a spill file (none left
 * behind) and streamed back intact, compressed and raw; a message over
 * LMBOX_MAX_MESSAGE_SIZE is refused with LMBOX_ERR_TOOBIG.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <zlib.h>

#include "test-common.h"

#define BIG_SIZE (50u * 1024 * 1024)

static unsigned char *make_body(size_t size, size_t *crlf_len_r)
{
	unsigned char *buf = malloc(size);
	uint32_t x = 12345;
	size_t bare = 0;

	/* text-like: words, LF or CRLF line ends, some binary noise */
	for (size_t i = 0; i < size; i++) {
		x = x * 1103515245 + 12345;
		if (i % 77 == 76)
			buf[i] = '\n';
		else if (i % 77 == 75 && (x >> 16) % 2 == 0)
			buf[i] = '\r';
		else
			buf[i] = (x >> 16) % 13 == 0 ? ' ' : (unsigned char)('a' + (x >> 16) % 26);
	}
	for (size_t i = 0; i < size; i++)
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			bare++;
	*crlf_len_r = size + bare;
	return buf;
}

static int dir_entries(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *d;
	int n = 0;

	if (dir == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL)
		if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
			n++;
	closedir(dir);
	return n;
}

static void big_round_trip(struct lmbox_store *store, const char *tmpdir,
			   const unsigned char *data, size_t size, size_t crlf_len)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_commit_result result;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_body *body;
	unsigned char *buf = malloc(100000);
	size_t pos;
	ssize_t n;
	uint32_t f;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
	for (pos = 0; pos < size; pos += 65537) {
		size_t len = size - pos < 65537 ? size - pos : 65537;
		CHECK_OK(store, lmbox_append_write(append, data + pos, len));
	}
	CHECK(lmbox_append_finish(&append) == 0);
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == 1 && result.uids[0] == 1);
	lmbox_commit_result_free(&result);
	CHECK(dir_entries(tmpdir) == 0);

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, f, 1, &meta));
	CHECK(meta.phys_size == size && meta.virt_size == crlf_len);
	CHECK(meta.checksum == (uint32_t)crc32(0, data, (uInt)size));
	CHECK_OK(store, lmbox_body_open(store, &meta, &body));
	pos = 0;
	while ((n = lmbox_body_read(body, buf, 100000)) > 0) {
		if (pos + (size_t)n > size || memcmp(buf, data + pos, (size_t)n) != 0) {
			CHECK(!"body differs");
			break;
		}
		pos += (size_t)n;
	}
	CHECK_OK(store, n);
	CHECK(pos == size);
	lmbox_body_close(&body);
	lmbox_reader_end(&reader);
	free(buf);
}

/* Many mid-size messages in one transaction: past 16 MiB in memory they
 * spill, and all of them come back. */
static void many_in_one_txn(struct lmbox_store *store)
{
	enum { N = 30, SIZE = 900 * 1024 };
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_commit_result result;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	unsigned char *buf = malloc(SIZE), *data;
	size_t size;
	uint32_t f;

	CHECK_OK(store, lmbox_folder_create(store, "many", 0, NULL, &f));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (int i = 0; i < N; i++) {
		uint32_t x = (uint32_t)i + 1;
		for (size_t j = 0; j < SIZE; j++) {
			x = x * 1103515245 + 12345;
			buf[j] = (unsigned char)(x >> 16);
		}
		CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
		CHECK_OK(store, lmbox_append_write(append, buf, SIZE));
		CHECK(lmbox_append_finish(&append) == i);
	}
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == N);
	lmbox_commit_result_free(&result);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	for (int i = 0; i < N; i += 7) {
		uint32_t x = (uint32_t)i + 1;
		for (size_t j = 0; j < SIZE; j++) {
			x = x * 1103515245 + 12345;
			buf[j] = (unsigned char)(x >> 16);
		}
		CHECK_OK(store, lmbox_reader_msg(reader, f, (uint32_t)i + 1, &meta));
		CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
		CHECK(size == SIZE && memcmp(data, buf, SIZE) == 0);
		free(data);
	}
	lmbox_reader_end(&reader);
	free(buf);
}

int main(void)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	const char *err;
	size_t crlf_len;
	unsigned char *data;
	uint32_t f;

	test_init();
	data = make_body(BIG_SIZE, &crlf_len);

	store = test_open("big", LMBOX_OPEN_CREATE);
	big_round_trip(store, test_path("big/tmp"), data, BIG_SIZE, crlf_len);
	many_in_one_txn(store);
	CHECK(dir_entries(test_path("big/tmp")) == 0);

	/* over the limit: refused before any byte is looked at */
	CHECK_OK(store, lmbox_folder_lookup(store, "INBOX", &(struct lmbox_folder_info){0}));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, 1, NULL, &append));
	CHECK_OK(store, lmbox_append_write(append, "x", 1));
	CHECK_ERR(store, lmbox_append_write(append, data, LMBOX_MAX_MESSAGE_SIZE),
		  LMBOX_ERR_TOOBIG);
	CHECK_ERR(store, lmbox_append_finish(&append), LMBOX_ERR_TOOBIG);
	lmbox_txn_abort(&txn);
	lmbox_store_close(&store);

	/* raw, and a tmp dir of our choosing */
	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.compress_level = 0;
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.tmp_dir = test_path("rawtmp");
	CHECK(mkdir(opts.tmp_dir, 0700) == 0);
	CHECK_OK(NULL, lmbox_store_open(test_path("bigraw"), &opts, &store, &err));
	big_round_trip(store, test_path("rawtmp"), data, BIG_SIZE, crlf_len);
	(void)f;
	lmbox_store_close(&store);
	free(data);
	return test_exit();
}
