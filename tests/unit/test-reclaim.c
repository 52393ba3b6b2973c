/*
 * test-reclaim: space management.  Segments rotate at segment_max; the
 * space of expunged mail comes back by itself (holes punched, dead
 * segments unlinked), also when the process stopped right after the commit
 * (redone at the next open); compact returns the rest; the LMDB map grows
 * on demand up to map_max and a full map fails a commit cleanly; check
 * repairs derived data.
 */
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test-common.h"

static struct lmbox_store *open_opts(const char *name, uint64_t segment_max,
				     uint64_t map_initial, uint64_t map_max)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	const char *err;
	int ret;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.segment_max = segment_max;
	opts.map_initial = map_initial;
	opts.map_max = map_max;
	ret = lmbox_store_open(test_path(name), &opts, &store, &err);
	if (ret < 0) {
		fprintf(stderr, "open failed: %s\n", err);
		exit(1);
	}
	return store;
}

/* Incompressible bodies so sizes on disk are predictable. */
static void fill_random(unsigned char *buf, size_t size, uint32_t seed)
{
	for (size_t i = 0; i < size; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = (unsigned char)(seed >> 16);
	}
}

static void expunge_range(struct lmbox_store *store, uint32_t f, uint32_t from, uint32_t to)
{
	struct lmbox_txn *txn;
	struct lmbox_commit_result result;

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (uint32_t uid = from; uid <= to; uid++)
		CHECK_OK(store, lmbox_txn_expunge(txn, f, uid));
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.expunged == to - from + 1);
	lmbox_commit_result_free(&result);
}

static void test_rotation_and_punch(void)
{
	struct lmbox_store *store = open_opts("rot", 256 * 1024, 0, 0);
	struct lmbox_store_stat st, st2;
	unsigned char *body = malloc(40000);
	uint32_t f;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	for (uint32_t i = 1; i <= 40; i++) {
		fill_random(body, 40000, i);
		CHECK(test_append(store, f, body, 40000, NULL) == i);
	}
	CHECK_OK(store, lmbox_store_stat(store, &st));
	/* 6 blobs of ~40 KB per 256 KiB segment */
	CHECK(st.segment_count >= 6 && st.segment_count <= 8);
	CHECK(st.message_count == 40 && st.phys_bytes == 40 * 40000);
	CHECK(st.reclaim_pending == 0);
	CHECK(st.stored_bytes == 40 * 40000);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);

	/* the first 12: whole sealed segments die and are unlinked */
	expunge_range(store, f, 1, 12);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.segment_count == st.segment_count - 2);
	CHECK(st2.reclaim_pending == 0);
	CHECK(st2.segment_alloc_bytes < st.segment_alloc_bytes - 2 * 200000);

	/* every other one: holes punched, allocation drops */
	st = st2;
	for (uint32_t uid = 14; uid <= 40; uid += 2)
		expunge_range(store, f, uid, uid);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending == 0);
	CHECK(st2.segment_alloc_bytes < st.segment_alloc_bytes - 14 * 32768);
	CHECK(st2.segment_bytes == st.segment_bytes);
	CHECK(st2.message_count == 14);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);

	/* compact moves the survivors and drops the sparse segments */
	{
		uint64_t freed;
		struct lmbox_reader *reader;
		struct lmbox_msg_meta meta;
		unsigned char *data;
		size_t size;

		struct lmbox_msg_meta stale;

		/* metadata read before compaction still finds the body */
		CHECK_OK(store, lmbox_reader_begin(store, &reader));
		CHECK_OK(store, lmbox_reader_msg(reader, f, 15, &stale));
		st = st2;
		CHECK_OK(store, lmbox_compact(store, &freed));
		CHECK_OK(store, lmbox_body_read_all(store, &stale, &data, &size));
		fill_random(body, 40000, 15);
		CHECK(size == 40000 && memcmp(data, body, size) == 0);
		free(data);
		lmbox_reader_end(&reader);
		CHECK_OK(store, lmbox_store_stat(store, &st2));
		CHECK(st2.segment_alloc_bytes <= st.segment_alloc_bytes);
		CHECK(st2.message_count == 14);
		CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
		CHECK_OK(store, lmbox_reader_begin(store, &reader));
		CHECK_OK(store, lmbox_reader_msg(reader, f, 13, &meta));
		CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
		fill_random(body, 40000, 13);
		CHECK(size == 40000 && memcmp(data, body, size) == 0);
		free(data);
		lmbox_reader_end(&reader);
	}
	/* and appends still work after it */
	CHECK(test_append(store, f, "after\n", 6, NULL) == 41);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);

	/* a stray segment file (its segment died long ago) */
	{
		char path[600];
		FILE *fp;

		snprintf(path, sizeof(path), "%s/seg/00000001", test_path("rot"));
		CHECK(access(path, F_OK) != 0);
		CHECK((fp = fopen(path, "w")) != NULL);
		fclose(fp);
		CHECK(lmbox_check(store, 0, NULL, NULL) == 1);
		CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) == 1);
		CHECK(access(path, F_OK) != 0);
		CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	}
	lmbox_store_close(&store);
	free(body);
}

static void test_redo_after_crash(void)
{
	struct lmbox_store *store = open_opts("redo", 128 * 1024, 0, 0);
	struct lmbox_store_stat st, st2;
	unsigned char *body = malloc(40000);
	uint32_t f;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	for (uint32_t i = 1; i <= 10; i++) {
		fill_random(body, 40000, i);
		test_append(store, f, body, 40000, NULL);
	}
	CHECK_OK(store, lmbox_store_stat(store, &st));
	/* "crash" between the commit and the punching */
	setenv("LMBOX_TEST_NO_RECLAIM", "1", 1);
	expunge_range(store, f, 1, 9);
	unsetenv("LMBOX_TEST_NO_RECLAIM");
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending > 0);
	CHECK(st2.segment_alloc_bytes == st.segment_alloc_bytes);
	CHECK(st2.message_count == 1);
	lmbox_store_close(&store);

	store = open_opts("redo", 128 * 1024, 0, 0);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.segment_alloc_bytes < st.segment_alloc_bytes - 8 * 32768);
	/* opening never takes the write lock: the records are forgotten by
	 * this process's next write */
	CHECK(st2.reclaim_pending > 0);
	CHECK(test_append(store, f, "x\n", 2, NULL) == 11);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending == 0);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	free(body);
}

/* LMBOX_OPEN_DEFER_RECLAIM: the commit only records; lmbox_store_reclaim()
 * (or the close) punches and forgets, and a crash before it leaves the
 * records for the next open. */
static void test_deferred(void)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct lmbox_store_stat st, st2;
	unsigned char *body = malloc(40000);
	const char *err;
	uint32_t f;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM;
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.segment_max = 128 * 1024;
	if (lmbox_store_open(test_path("defer"), &opts, &store, &err) < 0) {
		fprintf(stderr, "open failed: %s\n", err);
		exit(1);
	}
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	for (uint32_t i = 1; i <= 20; i++) {
		fill_random(body, 40000, i);
		test_append(store, f, body, 40000, NULL);
	}
	CHECK_OK(store, lmbox_store_stat(store, &st));
	expunge_range(store, f, 1, 9);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending > 0);
	CHECK(st2.segment_alloc_bytes == st.segment_alloc_bytes);
	CHECK_OK(store, lmbox_store_reclaim(store));
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending == 0);
	CHECK(st2.segment_alloc_bytes < st.segment_alloc_bytes - 8 * 32768);
	CHECK_OK(store, lmbox_store_reclaim(store)); /* nothing left: no-op */

	/* the close does it too */
	st = st2;
	expunge_range(store, f, 10, 15);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending > 0 && st2.segment_alloc_bytes == st.segment_alloc_bytes);
	lmbox_store_close(&store);
	store = open_opts("defer", 128 * 1024, 0, 0);
	CHECK_OK(store, lmbox_store_stat(store, &st2));
	CHECK(st2.reclaim_pending == 0);
	CHECK(st2.segment_alloc_bytes < st.segment_alloc_bytes - 5 * 32768);
	CHECK(st2.message_count == 5);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	free(body);
}

static void test_map_growth(void)
{
	struct lmbox_store *store = open_opts("map", 0, 128 * 1024, 64 * 1024 * 1024);
	struct lmbox_store_stat st;
	struct lmbox_append_opts opts;
	struct lmbox_folder_info info;
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	const char *kws[] = { "$label1", "a-rather-long-keyword-to-fill-the-map", NULL };
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta first, meta;
	char uidl[80];
	uint32_t f;
	int ret;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	lmbox_append_opts_init(&opts);
	opts.keywords = kws;
	opts.uidl = uidl;
	for (int i = 0; i < 3; i++) {
		snprintf(uidl, sizeof(uidl), "first-%d", i);
		test_append(store, f, "m\n", 2, &opts);
	}
	/* a reader and an iterator stay usable while the map grows and is
	 * remapped under them */
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_msg_iter_init(reader, f, 0, &iter));
	CHECK(lmbox_msg_iter_next(iter, &first) == 1);
	CHECK(strcmp(first.uidl, "first-0") == 0);
	for (int t = 0; t < 10; t++) {
		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		for (int i = 0; i < 500; i++) {
			snprintf(uidl, sizeof(uidl), "%064d", t * 500 + i);
			CHECK_OK(store, lmbox_append_begin(txn, f, &opts, &append));
			CHECK_OK(store, lmbox_append_write(append, "m\n", 2));
			CHECK(lmbox_append_finish(&append) == i);
		}
		CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	}
	CHECK_OK(store, lmbox_store_stat(store, &st));
	CHECK(st.map_size > 128 * 1024);
	CHECK(strcmp(first.uidl, "first-0") == 0 && first.kw_count == 2);
	CHECK(lmbox_msg_iter_next(iter, &meta) == 1);
	CHECK(meta.uid == 2 && strcmp(meta.uidl, "first-1") == 0);
	CHECK(strcmp(lmbox_meta_next_keyword(&first, NULL), "$label1") == 0);
	CHECK_OK(store, lmbox_reader_msg(reader, f, 3, &meta));
	CHECK_ERR(store, lmbox_reader_msg(reader, f, 4, &meta), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_refresh(reader));
	CHECK(lmbox_msg_iter_next(iter, &meta) == 1);
	CHECK(meta.uid == 3);
	CHECK(lmbox_msg_iter_next(iter, &meta) == 1);
	CHECK(meta.uid == 4);
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	CHECK(st.message_count == 5003);
	/* blocks are kept allocated past the end of lmbox.mdb, for deleting
	 * mail when the disk is full: a 16th of the pages in use, at least
	 * 256 KiB */
	{
		struct stat sb;
		char path[600];

		snprintf(path, sizeof(path), "%s/lmbox.mdb", test_path("map"));
		CHECK(stat(path, &sb) == 0);
		CHECK((uint64_t)sb.st_blocks * 512 >= (uint64_t)sb.st_size + 256 * 1024);
	}
	CHECK(st.map_size > 128 * 1024 && st.map_size <= 64 * 1024 * 1024);
	CHECK(st.map_used <= st.map_size);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);

	/* a map that may not grow enough: the commit fails, nothing of it
	 * is applied, and the store stays usable */
	store = open_opts("mapfull", 0, 128 * 1024, 256 * 1024);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (int i = 0; i < 5000; i++) {
		snprintf(uidl, sizeof(uidl), "%064d", i);
		CHECK_OK(store, lmbox_append_begin(txn, f, &opts, &append));
		CHECK_OK(store, lmbox_append_write(append, "m\n", 2));
		CHECK(lmbox_append_finish(&append) == i);
	}
	ret = lmbox_txn_commit(&txn, NULL);
	CHECK_ERR(store, ret, LMBOX_ERR_MAPFULL);
	CHECK(strstr(lmbox_store_errmsg(store), "map") != NULL);
	CHECK(lmbox_error_is_temporary(ret));
	CHECK_OK(store, lmbox_folder_get(store, f, &info));
	CHECK(info.count == 0 && info.next_uid == 1);
	CHECK(test_append(store, f, "small\n", 6, NULL) == 1);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);
}

/* Small messages: punching alone cannot return blocks shared by live and
 * dead blobs; the store compacts such a segment by itself. */
static void test_auto_compact(void)
{
	struct lmbox_store *store = open_opts("auto", 0, 0, 0);
	struct lmbox_store_stat st;
	struct lmbox_txn *txn;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	unsigned char body[1500], *data;
	size_t size;
	uint32_t f, n = 10000;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	for (uint32_t i = 1; i <= n; i++) {
		fill_random(body, sizeof(body), i);
		test_append(store, f, body, sizeof(body), NULL);
	}
	/* keep every 10th, deleted in QUIT-sized commits */
	for (uint32_t from = 1; from <= n; from += 500) {
		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		for (uint32_t uid = from; uid < from + 500; uid++)
			if (uid % 10 != 0)
				CHECK_OK(store, lmbox_txn_expunge(txn, f, uid));
		CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	}
	CHECK_OK(store, lmbox_store_stat(store, &st));
	CHECK(st.message_count == n / 10);
	/* live: 1000 x 1532 bytes; punching alone leaves ~5.6 MB allocated */
	if (getenv("LMBOX_TEST_VERBOSE") != NULL)
		printf("auto-compact: %llu bytes allocated for %llu live\n",
		       (unsigned long long)st.segment_alloc_bytes,
		       (unsigned long long)st.stored_bytes);
	CHECK(st.segment_alloc_bytes < st.stored_bytes + 1024 * 1024);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, f, 9990, &meta));
	CHECK_OK(store, lmbox_body_read_all(store, &meta, &data, &size));
	fill_random(body, sizeof(body), 9990);
	CHECK(size == sizeof(body) && memcmp(data, body, size) == 0);
	free(data);
	lmbox_reader_end(&reader);
	lmbox_store_close(&store);
}

/* Another process grows the map while this one has a reader open. */
static void test_map_resized(void)
{
	struct lmbox_store *store = open_opts("resized", 0, 128 * 1024, 64 * 1024 * 1024);
	struct lmbox_store_stat st;
	struct lmbox_reader *reader, *reader2;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	struct lmbox_folder_info info;
	uint32_t f;
	pid_t pid;
	int status;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	test_append(store, f, "a\n", 2, NULL);
	test_append(store, f, "b\n", 2, NULL);
	CHECK_OK(store, lmbox_store_stat(store, &st));
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_msg_iter_init(reader, f, 0, &iter));
	CHECK(lmbox_msg_iter_next(iter, &meta) == 1);
	pid = fork();
	if (pid == 0) {
		struct lmbox_store *child = open_opts("resized", 0, 128 * 1024, 64 * 1024 * 1024);
		struct lmbox_append_opts opts;
		struct lmbox_txn *txn;
		struct lmbox_append *append;
		char uidl[80];

		lmbox_append_opts_init(&opts);
		opts.uidl = uidl;
		CHECK_OK(child, lmbox_txn_begin(child, &txn));
		for (int i = 0; i < 4000; i++) {
			snprintf(uidl, sizeof(uidl), "%064d", i);
			CHECK_OK(child, lmbox_append_begin(txn, f, &opts, &append));
			CHECK_OK(child, lmbox_append_write(append, "m\n", 2));
			CHECK(lmbox_append_finish(&append) == i);
		}
		CHECK_OK(child, lmbox_txn_commit(&txn, NULL));
		lmbox_store_close(&child);
		_exit(test_failures != 0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "child status 0x%x\n", status);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* a lookup adopts the grown map (MDB_MAP_RESIZED), a second reader
	 * sees it; the first keeps working */
	CHECK_OK(store, lmbox_folder_get(store, f, &info));
	CHECK(info.count == 4002);
	CHECK_OK(store, lmbox_reader_begin(store, &reader2));
	CHECK_OK(store, lmbox_reader_folder(reader2, f, &info));
	CHECK(info.count == 4002);
	CHECK(lmbox_msg_iter_next(iter, &meta) == 1 && meta.uid == 2);
	CHECK(lmbox_msg_iter_next(iter, &meta) == 0);
	test_append(store, f, "c\n", 2, NULL);
	CHECK_OK(store, lmbox_reader_refresh(reader));
	CHECK_OK(store, lmbox_reader_msg(reader, f, 4003, &meta));
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader2);
	lmbox_reader_end(&reader);
	CHECK_OK(store, lmbox_store_stat(store, &st));
	CHECK(st.message_count == 4003 && st.map_size > 128 * 1024);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	lmbox_store_close(&store);
}

/* Damage derived data straight in LMDB; check finds it, repair fixes it. */
static void test_repair(void)
{
	struct lmbox_store *store = open_opts("repair", 0, 0, 0);
	struct lmbox_reader *reader;
	struct lmbox_append_opts opts;
	char path[600];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi folders, uidls;
	MDB_val k, v;
	unsigned char key[4] = { 0, 0, 0, 1 }, rec[2048];
	uint32_t f, uid;

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	CHECK(f == 1);
	lmbox_append_opts_init(&opts);
	opts.uidl = "the-uidl";
	test_append(store, f, "one\n", 4, &opts);
	test_append(store, f, "two\n", 4, NULL);
	lmbox_store_close(&store);

	snprintf(path, sizeof(path), "%s/lmbox.mdb", test_path("repair"));
	CHECK(mdb_env_create(&env) == 0);
	mdb_env_set_maxdbs(env, 16);
	CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, "folders", 0, &folders) == 0);
	CHECK(mdb_dbi_open(txn, "uidls", MDB_DUPSORT | MDB_DUPFIXED, &uidls) == 0);
	k.mv_data = key;
	k.mv_size = 4;
	CHECK(mdb_get(txn, folders, &k, &v) == 0);
	CHECK(v.mv_size < sizeof(rec));
	memcpy(rec, v.mv_data, v.mv_size);
	rec[16] = 7;   /* count */
	rec[12] = 1;   /* next_uid below the messages */
	v.mv_data = rec;
	CHECK(mdb_put(txn, folders, &k, &v, 0) == 0);
	{
		unsigned char ukey[12] = { 0, 0, 0, 1, 't', 'h', 'e', '-', 'u', 'i', 'd', 'l' };
		MDB_val uk = { sizeof(ukey), ukey };
		CHECK(mdb_del(txn, uidls, &uk, NULL) == 0);
	}
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);

	store = open_opts("repair", 0, 0, 0);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 3);
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) == 3);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_uidl(reader, f, "the-uidl", &uid));
	CHECK(uid == 1);
	lmbox_reader_end(&reader);
	CHECK(test_append(store, f, "three\n", 6, NULL) == 3);
	lmbox_store_close(&store);
}

int main(void)
{
	test_init();
	test_rotation_and_punch();
	test_redo_after_crash();
	test_deferred();
	test_auto_compact();
	test_map_growth();
	test_map_resized();
	test_repair();
	return test_exit();
}
