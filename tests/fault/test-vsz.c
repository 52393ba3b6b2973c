/*
 * test-vsz.c: a store holding 2 GB of mail works inside Dovecot's default
 * vsz_limit.  A child fills a store with ~2 GiB of incompressible-ish mail
 * (stored raw, no fsync: for speed); another child, under
 * setrlimit(RLIMIT_AS, 256 MiB), opens it, lists every message, reads the
 * first, a middle and the last message byte-for-byte, and delivers one more
 * message.  Skipped under AddressSanitizer, whose shadow memory needs far
 * more address space than any vsz_limit.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "fault-util.h"

#if defined(__SANITIZE_ADDRESS__)
#  define UNDER_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define UNDER_ASAN 1
#  endif
#endif

#define TOTAL_BYTES (2048ULL * 1024 * 1024)
#define VSZ_LIMIT (256ULL * 1024 * 1024)
#define CHUNK (1024 * 1024)
#define PER_COMMIT 16

static char *dir;
static uint32_t nmsgs;

/* Message i: a short header and then noise; 256 KiB - 2 MiB. */
static size_t msg_size(uint32_t i)
{
	return 256 * 1024 + (size_t)((i * 2654435761u) % (1792 * 1024));
}

static void gen_piece(uint32_t i, size_t off, unsigned char *buf, size_t len)
{
	/* noise keyed by message and chunk, so any piece can be regenerated */
	fault_fill_noise(((uint64_t)i << 20) + off / CHUNK, buf, len);
	if (off == 0 && len >= 64)
		snprintf((char *)buf, 64, "Subject: vsz %u\nX-Pad: ", i);
}

static int fill_main(void *arg)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_NEVER, 0);
	uint32_t folder = fault_folder(store, "INBOX"), i;
	struct lmbox_append_opts opts;
	struct lmbox_append *append;
	struct lmbox_txn *txn = NULL;
	unsigned char *buf = malloc(CHUNK);
	uint64_t total = 0;
	size_t size, off, n;

	(void)arg;
	CHECK(buf != NULL, "malloc");
	lmbox_append_opts_init(&opts);
	for (i = 0; total < TOTAL_BYTES; i++) {
		if (txn == NULL)
			CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder, &opts, &append), "append");
		size = msg_size(i);
		for (off = 0; off < size; off += n) {
			n = size - off < CHUNK ? size - off : CHUNK;
			gen_piece(i, off, buf, n);
			CHECK_LM(store, lmbox_append_write(append, buf, n), "write");
		}
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		total += size;
		if ((i + 1) % PER_COMMIT == 0)
			CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit");
	}
	if (txn != NULL)
		CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit");
	free(buf);
	lmbox_store_close(&store);
	return 0;
}

static void check_msg(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
		      uint32_t i)
{
	unsigned char *want, *got;
	size_t size = msg_size(i), off, n, got_len;

	CHECK(meta->phys_size == size, "message %u: psize %llu, expected %zu", i,
	      (unsigned long long)meta->phys_size, size);
	CHECK_LM(store, lmbox_body_read_all(store, meta, &got, &got_len), "body read");
	CHECK(got_len == size, "message %u: read %zu bytes", i, got_len);
	want = malloc(CHUNK);
	CHECK(want != NULL, "malloc");
	for (off = 0; off < size; off += n) {
		n = size - off < CHUNK ? size - off : CHUNK;
		gen_piece(i, off, want, n);
		CHECK(memcmp(got + off, want, n) == 0, "message %u differs at %zu", i, off);
	}
	free(want);
	free(got);
}

static int limited_main(void *arg)
{
	struct rlimit rl = { VSZ_LIMIT, VSZ_LIMIT };
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct lmbox_store_stat st;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta, first, middle, last;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	const char *errmsg = NULL;
	uint32_t count = 0, id;
	uint64_t psum = 0;
	int ret;

	(void)arg;
	CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
	/* defaults: what the plugin uses inside a pop3/imap/lmtp process */
	lmbox_store_opts_init(&opts);
	ret = lmbox_store_open(dir, &opts, &store, &errmsg);
	CHECK(ret == 0, "open under a 256 MiB address space limit: %s (%s)",
	      lmbox_strerror(ret), errmsg == NULL ? "" : errmsg);
	CHECK_LM(store, lmbox_store_stat(store, &st), "stat");
	CHECK_LM(store, lmbox_folder_lookup(store, "INBOX", &info), "lookup");
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
	memset(&first, 0, sizeof(first));
	memset(&middle, 0, sizeof(middle));
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		if (count == 0)
			first = meta;
		if (count == nmsgs / 2)
			middle = meta;
		last = meta;
		psum += meta.phys_size;
		count++;
	}
	CHECK_LM(store, ret, "iter");
	lmbox_msg_iter_deinit(&iter);
	CHECK(count == nmsgs, "listed %u messages, expected %u", count, nmsgs);
	CHECK(psum >= TOTAL_BYTES, "listed %llu bytes", (unsigned long long)psum);
	check_msg(store, &first, 0);
	check_msg(store, &middle, nmsgs / 2);
	check_msg(store, &last, nmsgs - 1);
	lmbox_reader_end(&reader);

	/* and a delivery */
	CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
	CHECK_LM(store, lmbox_append_begin(txn, info.id, NULL, &append), "append");
	CHECK_LM(store, lmbox_append_write(append, "Subject: hi\n\nhello\n", 19), "write");
	CHECK_LM(store, lmbox_append_finish(&append), "finish");
	CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit under the limit");
	id = info.id;
	CHECK_LM(store, lmbox_folder_get(store, id, &info), "folder get");
	CHECK(info.count == nmsgs + 1, "count %u after delivery", info.count);
	printf("under RLIMIT_AS 256 MiB: opened, listed %u messages (%llu MiB), read 3, "
	       "delivered 1; map %llu MiB, %u segments\n", count,
	       (unsigned long long)(psum >> 20), (unsigned long long)(st.map_size >> 20),
	       st.segment_count);
	lmbox_store_close(&store);
	return 0;
}

int main(void)
{
	uint64_t total = 0;
	double t0 = fault_now(), t1;

#ifdef UNDER_ASAN
	printf("test-vsz: skipped under AddressSanitizer\n");
	return FAULT_SKIP;
#endif
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (nmsgs = 0; total < TOTAL_BYTES; nmsgs++)
		total += msg_size(nmsgs);
	dir = fault_mkdtemp("vsz");
	fault_rmtree_at_exit(dir);
	fault_run_child("fill 2 GiB", fill_main, NULL);
	t1 = fault_now();
	printf("filled %u messages, %llu MiB in %.1f s\n", nmsgs,
	       (unsigned long long)(total >> 20), t1 - t0);
	fault_run_child("use under vsz_limit", limited_main, NULL);
	printf("limited access in %.1f s\n", fault_now() - t1);
	fault_rmtree(dir);
	free(dir);
	return 0;
}
