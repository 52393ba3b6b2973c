/*
 * test-sdict: the store's own dictionary (codec 4, storage/lmbox-sdict.c).
 * A store trains it after its first LMBOX_SDICT_TRAIN_MSGS messages; later
 * messages use it and are smaller; they read back exactly, also through a
 * new handle; a damaged first copy of the dictionary is survived and
 * repaired by lmbox_check, two damaged copies make exactly the codec 4
 * messages unreadable (LMBOX_ERR_CORRUPT) and are reported; a handle that
 * found the store too small still trains once it grows past the threshold.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "test-common.h"
#include "lmbox-private.h"

static uint32_t folder;

/* message i: text made of a small vocabulary, as a user's mail is */
static size_t make_msg(unsigned int i, char *buf, size_t size)
{
	static const char *const words[] = {
		"meeting", "report", "project", "invoice", "tomorrow", "schedule",
		"customer", "delivery", "thanks", "regards", "lunch", "budget",
		"quarterly", "numbers", "attached", "review", "deadline", "friday",
	};
	uint32_t x = i * 2654435761u + 1;
	size_t len = (size_t)snprintf(buf, size, "From: alice@example.org\r\nTo: bob@example.org\r\n"
				      "Subject: message %u\r\n\r\n", i);

	while (len + 40 < size - 2 && len < 3000) {
		x = x * 1103515245 + 12345;
		len += (size_t)snprintf(buf + len, size - len, "%s ", words[(x >> 16) % 18]);
		if ((x >> 8) % 11 == 0)
			len += (size_t)snprintf(buf + len, size - len, "\r\n");
	}
	len += (size_t)snprintf(buf + len, size - len, "\r\n");
	return len;
}

static void get_meta(struct lmbox_store *store, uint32_t uid, struct lmbox_msg_meta *meta)
{
	struct lmbox_reader *reader;

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, folder, uid, meta));
	lmbox_reader_end(&reader);
}

static int read_check(struct lmbox_store *store, uint32_t uid, unsigned int i)
{
	struct lmbox_msg_meta meta;
	unsigned char *data;
	char want[4096];
	size_t size, len = make_msg(i, want, sizeof(want));
	int ret;

	get_meta(store, uid, &meta);
	if ((ret = lmbox_body_read_all(store, &meta, &data, &size)) < 0)
		return ret;
	CHECK(size == len && memcmp(data, want, len) == 0);
	free(data);
	return 0;
}

/* A flipped bit anywhere in a codec 4 body's stored bytes is an error or,
 * for the few bits deflate ignores, gives the same bytes back. */
static void check_every_stored_byte(struct lmbox_store *store, uint32_t uid, unsigned int i)
{
	struct lmbox_msg_meta meta;
	char path[600];
	unsigned char c;
	unsigned int same = 0;
	int fd, ret;

	get_meta(store, uid, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_B64_SDICT);
	snprintf(path, sizeof(path), "%s/seg/%08X", test_path("sdict"), meta.seg_id);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	for (uint64_t off = meta.seg_offset + 32; off < meta.seg_offset + 32 + meta.stored_size; off++) {
		CHECK(pread(fd, &c, 1, (off_t)off) == 1);
		c ^= 0x10;
		CHECK(pwrite(fd, &c, 1, (off_t)off) == 1);
		ret = read_check(store, uid, i);
		if (ret == 0)
			same++;
		else
			CHECK(ret == LMBOX_ERR_CHECKSUM || ret == LMBOX_ERR_CORRUPT);
		c ^= 0x10;
		CHECK(pwrite(fd, &c, 1, (off_t)off) == 1);
	}
	close(fd);
	CHECK(same <= 2);
	CHECK_OK(store, read_check(store, uid, i));
}

/* Flips a byte of the dictionary record at off (a write transaction). */
struct flip_ctx {
	uint32_t id;
	size_t off;
};

static int flip_fn(struct lmbox_wctx *ctx, void *context)
{
	struct flip_ctx *fc = context;
	unsigned char key[4] = { (unsigned char)(fc->id >> 24), (unsigned char)(fc->id >> 16),
				 (unsigned char)(fc->id >> 8), (unsigned char)fc->id };
	MDB_val k = { 4, key }, v;
	unsigned char *copy;
	int rc;

	if ((rc = mdb_get(ctx->txn, ctx->store->env->dbi_dicts, &k, &v)) != 0)
		return LMBOX_ERR_IO;
	copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[fc->off] ^= 0x20;
	v.mv_data = copy;
	rc = mdb_put(ctx->txn, ctx->store->env->dbi_dicts, &k, &v, 0);
	free(copy);
	return rc == 0 ? 0 : LMBOX_ERR_IO;
}

static const char *dict_file(const char *name, uint32_t id)
{
	static char path[600];

	snprintf(path, sizeof(path), "%s/dict/%08lX.dict", test_path(name), (unsigned long)id);
	return path;
}

static void flip_file_byte(uint32_t id, off_t off)
{
	unsigned char c;
	int fd = open(dict_file("sdict", id), O_RDWR);

	CHECK(fd >= 0);
	CHECK(pread(fd, &c, 1, off) == 1);
	c ^= 0x04;
	CHECK(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

static int drop_dicts_fn(struct lmbox_wctx *ctx, void *context)
{
	(void)context;
	return mdb_drop(ctx->txn, ctx->store->env->dbi_dicts, 1) == 0 ? 0 : LMBOX_ERR_IO;
}

/* A store from before codec 4 (no "dicts" database): read-only it has no
 * dictionaries and reads fine; opened read-write it gets the database and
 * trains. */
static void test_old_store(void)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct lmbox_msg_meta meta;
	const char *err;
	char buf[4096];
	uint32_t uid = 0, id;
	size_t len;

	store = test_open("old", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	CHECK_OK(store, lmbox_write(store, drop_dicts_fn, NULL));
	lmbox_store_close(&store);

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_RDONLY;
	opts.fsync = LMBOX_FSYNC_NEVER;
	CHECK_OK(NULL, lmbox_store_open(test_path("old"), &opts, &store, &err));
	CHECK(!store->env->has_dicts);
	CHECK(lmbox_sdict_current(store, &id) == 0 && id == 0);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);

	store = test_open("old", 0);
	CHECK(store->env->has_dicts);
	for (unsigned int i = 0; i < LMBOX_SDICT_TRAIN_MSGS + 1; i++) {
		len = make_msg(i, buf, sizeof(buf));
		uid = test_append(store, folder, buf, len, NULL);
	}
	get_meta(store, uid, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_B64_SDICT);
	CHECK_OK(store, read_check(store, uid, LMBOX_SDICT_TRAIN_MSGS));
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	/* trained before dictionary files: the next read-write handle
	   that saves writes it from the record before using it */
	CHECK(lmbox_sdict_current(store, &id) == 0 && id != 0);
	CHECK(unlink(dict_file("old", id)) == 0);
	lmbox_store_close(&store);
	store = test_open("old", 0);
	len = make_msg(300, buf, sizeof(buf));
	uid = test_append(store, folder, buf, len, NULL);
	get_meta(store, uid, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_B64_SDICT);
	CHECK(access(dict_file("old", id), F_OK) == 0);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);
}

/* A dictionary whose file cannot be written is not published: the saves
 * go on as codec 3, with a warning; once the file can be written, a new
 * handle trains. */
static void test_no_dict_dir(void)
{
	struct lmbox_store *store;
	struct lmbox_msg_meta meta;
	char buf[4096], dir[600];
	uint32_t uid = 0, id;
	size_t len;
	int fd;

	store = test_open("rodict", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	snprintf(dir, sizeof(dir), "%s/dict", test_path("rodict"));
	if (geteuid() == 0) {
		/* root writes into a read-only directory: a file in its place */
		CHECK((fd = open(dir, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
		close(fd);
	} else {
		CHECK(mkdir(dir, 0500) == 0);
	}
	for (unsigned int i = 0; i < LMBOX_SDICT_TRAIN_MSGS + 5; i++) {
		len = make_msg(i, buf, sizeof(buf));
		uid = test_append(store, folder, buf, len, NULL);
		if (i + 1 == LMBOX_SDICT_TRAIN_MSGS) {
			const char *w = lmbox_store_take_warning(store);

			CHECK(w != NULL && strstr(w, "dict") != NULL);
		}
	}
	get_meta(store, uid, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_DICT1);
	CHECK(lmbox_sdict_current(store, &id) == 0 && id == 0);
	CHECK_OK(store, read_check(store, uid, LMBOX_SDICT_TRAIN_MSGS + 4));
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);
	/* a new handle: trained now that the directory is usable */
	if (geteuid() == 0)
		CHECK(unlink(dir) == 0);
	else
		CHECK(chmod(dir, 0700) == 0);
	store = test_open("rodict", 0);
	len = make_msg(400, buf, sizeof(buf));
	(void)test_append(store, folder, buf, len, NULL);
	CHECK(lmbox_sdict_current(store, &id) == 0 && id != 0);
	CHECK(access(dict_file("rodict", id), F_OK) == 0);
	uid = test_append(store, folder, buf, len, NULL);
	get_meta(store, uid, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_B64_SDICT);
	CHECK_OK(store, read_check(store, uid, 400));
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
}

/* Killed inside the transaction that publishes the dictionary, after its
 * file was written: nothing published, the messages all there, check
 * clean (the orphan file is harmless); the next training comes out with
 * the same bytes, keeps the file and publishes. */
static void test_killed_training(void)
{
	struct lmbox_store *store;
	struct lmbox_msg_meta meta;
	char buf[4096], dir[600];
	uint32_t uid = 0, id;
	size_t len;
	pid_t pid;
	int status;
	DIR *dh;
	struct dirent *de;
	unsigned int files = 0;

	store = test_open("killed", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	lmbox_store_close(&store);
	fflush(NULL);
	if ((pid = fork()) == 0) {
		setenv("LMBOX_TEST_KILL_IN_SDICT", "1", 1);
		store = test_open("killed", 0);
		for (unsigned int i = 0; i < LMBOX_SDICT_TRAIN_MSGS; i++) {
			len = make_msg(i, buf, sizeof(buf));
			(void)test_append(store, folder, buf, len, NULL);
		}
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	store = test_open("killed", 0);
	CHECK(lmbox_sdict_current(store, &id) == 0 && id == 0);
	snprintf(dir, sizeof(dir), "%s/dict", test_path("killed"));
	CHECK((dh = opendir(dir)) != NULL);
	while ((de = readdir(dh)) != NULL)
		files += strstr(de->d_name, ".dict") != NULL && strstr(de->d_name, ".tmp") == NULL;
	closedir(dh);
	CHECK(files == 1);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	len = make_msg(LMBOX_SDICT_TRAIN_MSGS, buf, sizeof(buf));
	(void)test_append(store, folder, buf, len, NULL);
	CHECK(lmbox_sdict_current(store, &id) == 0 && id != 0);
	CHECK(access(dict_file("killed", id), F_OK) == 0);
	uid = test_append(store, folder, buf, len, NULL);
	get_meta(store, uid, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_B64_SDICT);
	CHECK_OK(store, read_check(store, uid, LMBOX_SDICT_TRAIN_MSGS));
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
}

/* A handle that found the store too small (enough messages, too few
 * bytes) and so stopped looking on every commit still trains, on the
 * commit whose messages take the live blobs past the threshold. */
static void test_grows_later(void)
{
	const uint64_t threshold = 200000;
	struct lmbox_store *store;
	struct lmbox_store_stat st;
	char buf[4096];
	uint32_t id;
	uint64_t live;
	unsigned int i;
	size_t len;

	setenv("LMBOX_TEST_SDICT_STORED", "200000", 1);
	store = test_open("grows", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	for (i = 0; i < 2000; i++) {
		len = make_msg(i, buf, sizeof(buf));
		(void)test_append(store, folder, buf, len, NULL);
		CHECK_OK(store, lmbox_store_stat(store, &st));
		live = st.stored_bytes + st.message_count * LMBOX_BLOB_HDR_SIZE;
		CHECK(lmbox_sdict_current(store, &id) == 0);
		if (i + 1 == LMBOX_SDICT_TRAIN_MSGS) {
			/* the case at hand: messages enough, bytes not */
			CHECK(live < threshold);
			CHECK(id == 0 && store->sdict_small && store->sdict_need_bytes > 0);
		}
		if (live < threshold) {
			CHECK(id == 0);
		} else {
			CHECK(id != 0);
			break;
		}
	}
	CHECK(i > LMBOX_SDICT_TRAIN_MSGS && i < 2000);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	setenv("LMBOX_TEST_SDICT_STORED", "0", 1);
}

/* the unit test's stores are small: train after 100 messages anyway */
__attribute__((constructor)) static void sdict_test_env(void)
{
	setenv("LMBOX_TEST_SDICT_STORED", "0", 1);
}

int main(void)
{
	struct lmbox_store *store;
	struct lmbox_msg_meta meta;
	struct flip_ctx fc;
	char buf[4096];
	uint32_t uids[140], id, uid_plain;
	uint64_t stored_before = 0, stored_after = 0;
	size_t len;

	test_init();
	store = test_open("sdict", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	for (unsigned int i = 0; i < 140; i++) {
		len = make_msg(i, buf, sizeof(buf));
		uids[i] = test_append(store, folder, buf, len, NULL);
		CHECK(lmbox_sdict_current(store, &id) == 0);
		/* trained by the commit of the 100th message */
		CHECK((id != 0) == (i + 1 >= LMBOX_SDICT_TRAIN_MSGS));
	}
	for (unsigned int i = 0; i < 140; i++) {
		get_meta(store, uids[i], &meta);
		/* the 100th was begun before the dictionary existed */
		CHECK(meta.codec == (i < LMBOX_SDICT_TRAIN_MSGS ? LMBOX_CODEC_DEFLATE_DICT1 :
				     LMBOX_CODEC_DEFLATE_B64_SDICT));
		if (i >= 60 && i < 100)
			stored_before += meta.stored_size;
		else if (i >= 100)
			stored_after += meta.stored_size;
		CHECK_OK(store, read_check(store, uids[i], i));
	}
	/* its file was written at training, and holds the same bytes */
	CHECK(lmbox_sdict_current(store, &id) == 0 && id != 0);
	{
		const unsigned char *d, *fd_bytes;
		unsigned char *fbuf;
		size_t dlen, flen;

		CHECK(access(dict_file("sdict", id), F_OK) == 0);
		CHECK_OK(store, lmbox_sdict_get(store, id, &d, &dlen));
		CHECK_OK(store, lmbox_sdict_file_read(store, id, &fbuf, &fd_bytes, &flen));
		CHECK(flen == dlen && memcmp(fd_bytes, d, dlen) == 0);
		free(fbuf);
	}
	/* the same kind of text, a quarter smaller or better (a third here) */
	CHECK(stored_after * 4 < stored_before * 3);
	check_every_stored_byte(store, uids[110], 110);
	/* a codec 2 copy of a message, for the damage below */
	lmbox_append_force_codec = LMBOX_CODEC_DEFLATE_DICT1;
	len = make_msg(7, buf, sizeof(buf));
	uid_plain = test_append(store, folder, buf, len, NULL);
	lmbox_append_force_codec = 0;
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);

	/* a new handle reads the dictionary from the store */
	lmbox_store_close(&store);
	store = test_open("sdict", 0);
	CHECK_OK(store, read_check(store, uids[120], 120));
	CHECK(lmbox_sdict_current(store, &id) == 0 && id != 0);

	/* the first copy damaged: read from the second, reported, repaired */
	fc.id = id;
	fc.off = LMBOX_DICT_REC_FIXED + 10;
	CHECK_OK(store, lmbox_write(store, flip_fn, &fc));
	lmbox_store_close(&store);
	store = test_open("sdict", 0);
	CHECK_OK(store, read_check(store, uids[121], 121));
	CHECK(lmbox_check(store, 0, NULL, NULL) == 1);
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) == 1);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);

	/* both copies damaged: read from the file; reported, record repaired */
	{
		const unsigned char *d;
		size_t dlen = 0;

		CHECK_OK(store, lmbox_sdict_get(store, id, &d, &dlen));
		fc.off = LMBOX_DICT_REC_FIXED + 10;
		CHECK_OK(store, lmbox_write(store, flip_fn, &fc));
		/* the same byte of the second copy */
		fc.off = LMBOX_DICT_REC_FIXED + dlen + 10;
	}
	CHECK_OK(store, lmbox_write(store, flip_fn, &fc));
	lmbox_store_close(&store);
	store = test_open("sdict", 0);
	CHECK_OK(store, read_check(store, uids[130], 130));
	{
		const char *w = lmbox_store_take_warning(store);

		CHECK(w != NULL && strstr(w, "its file") != NULL);
		CHECK(lmbox_store_take_warning(store) == NULL);
	}
	CHECK(lmbox_check(store, 0, NULL, NULL) == 1);
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) == 1);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);
	store = test_open("sdict", 0);
	CHECK_OK(store, read_check(store, uids[131], 131));
	CHECK(lmbox_store_take_warning(store) == NULL);

	/* the file damaged: reported, rewritten from the record */
	flip_file_byte(id, LMBOX_DICT_FILE_HDR + 100);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 1);
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) == 1);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	/* the file missing: the same */
	CHECK(unlink(dict_file("sdict", id)) == 0);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 1);
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) == 1);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	CHECK(access(dict_file("sdict", id), F_OK) == 0);

	/* both copies and the file damaged: codec 4 messages are corrupt,
	   not others */
	flip_file_byte(id, LMBOX_DICT_FILE_HDR + 100);
	fc.off = LMBOX_DICT_REC_FIXED + 10;
	CHECK_OK(store, lmbox_write(store, flip_fn, &fc));
	{
		const unsigned char *d;
		size_t dlen = 0;

		CHECK_OK(store, lmbox_sdict_get(store, id, &d, &dlen));
		fc.off = LMBOX_DICT_REC_FIXED + dlen + 10;
	}
	CHECK_OK(store, lmbox_write(store, flip_fn, &fc));
	lmbox_store_close(&store);
	store = test_open("sdict", 0);
	CHECK_ERR(store, read_check(store, uids[130], 130), LMBOX_ERR_CORRUPT);
	CHECK(strstr(lmbox_store_errmsg(store), "dictionary") != NULL);
	CHECK(strstr(lmbox_store_errmsg(store), "its file") != NULL);
	CHECK_OK(store, read_check(store, uids[5], 5));
	CHECK_OK(store, read_check(store, uid_plain, 7));
	CHECK(lmbox_check(store, 0, NULL, NULL) > 0);
	/* repair stops new messages from using it; they are readable */
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) > 0);
	lmbox_store_close(&store);
	store = test_open("sdict", 0);
	len = make_msg(500, buf, sizeof(buf));
	{
		uint32_t uid = test_append(store, folder, buf, len, NULL);

		get_meta(store, uid, &meta);
		/* retrained from the same text: the same id, whose record is
		   damaged and never overwritten: no dictionary from now on */
		CHECK(meta.codec == LMBOX_CODEC_DEFLATE_DICT1);
		CHECK_OK(store, read_check(store, uid, 500));
		CHECK(lmbox_sdict_current(store, &id) == 0 && id == 0);
		uid = test_append(store, folder, buf, len, NULL);
		get_meta(store, uid, &meta);
		CHECK(meta.codec == LMBOX_CODEC_DEFLATE_DICT1);
	}
	lmbox_store_close(&store);
	test_old_store();
	test_no_dict_dir();
	test_killed_training();
	test_grows_later();
	return test_exit();
}
