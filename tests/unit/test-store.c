/*
 * test-store: opening and closing stores: creation, read-only use, the
 * format version check, one environment per process shared by several
 * opens, fork detection, error texts, and store-wide u64 values.
 */
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test-common.h"

static void test_open_errors(void)
{
	struct lmbox_store *store;
	struct lmbox_store_opts opts;
	const char *err = NULL;

	CHECK_ERR(NULL, lmbox_store_open(test_path("missing"), NULL, &store, &err),
		  LMBOX_ERR_NOTFOUND);
	CHECK(store == NULL && err != NULL && strstr(err, "missing") != NULL);
	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.compress_level = 10;
	CHECK_ERR(NULL, lmbox_store_open(test_path("bad"), &opts, &store, &err),
		  LMBOX_ERR_INVALID);
	CHECK(err != NULL && strstr(err, "compress_level") != NULL);
	CHECK_ERR(NULL, lmbox_store_open("", NULL, &store, NULL), LMBOX_ERR_INVALID);
	lmbox_store_close(&store); /* NULL-safe */
}

static void test_strerror(void)
{
	for (int e = 0; e >= LMBOX_ERR_READONLY; e--) {
		CHECK(lmbox_strerror(e) != NULL);
		CHECK(strcmp(lmbox_strerror(e), "unknown error") != 0);
		for (int e2 = e - 1; e2 >= LMBOX_ERR_READONLY; e2--)
			CHECK(strcmp(lmbox_strerror(e), lmbox_strerror(e2)) != 0);
	}
	CHECK(strcmp(lmbox_strerror(-999), "unknown error") == 0);
	CHECK(lmbox_error_is_temporary(LMBOX_ERR_NOSPACE));
	CHECK(lmbox_error_is_temporary(LMBOX_ERR_BUSY));
	CHECK(!lmbox_error_is_temporary(LMBOX_ERR_CORRUPT));
	CHECK(!lmbox_error_is_temporary(LMBOX_OK));
}

static void test_shared_and_rdonly(void)
{
	struct lmbox_store *a, *b, *ro;
	struct lmbox_store_opts opts;
	struct lmbox_folder_info info;
	struct lmbox_txn *txn;
	uint64_t value;
	uint32_t f;
	const char *err;

	a = test_open("shared", LMBOX_OPEN_CREATE);
	b = test_open("shared", 0);
	CHECK(strcmp(lmbox_store_path(a), test_path("shared")) == 0);
	CHECK_OK(a, lmbox_folder_create(a, "INBOX", 0, NULL, &f));
	CHECK_OK(b, lmbox_folder_lookup(b, "INBOX", &info));
	CHECK(info.id == f);
	lmbox_store_close(&a);
	CHECK(a == NULL);
	/* b keeps the shared environment alive */
	test_append(b, f, "hi\n", 3, NULL);
	CHECK_OK(b, lmbox_folder_get(b, f, &info));
	CHECK(info.count == 1);

	/* u64 values */
	CHECK_ERR(b, lmbox_store_get_u64(b, "pop3.last_login", &value), LMBOX_ERR_NOTFOUND);
	CHECK(strstr(lmbox_store_errmsg(b), "pop3.last_login") != NULL);
	CHECK_OK(b, lmbox_store_set_u64(b, "pop3.last_login", 1700000000));
	CHECK_OK(b, lmbox_store_set_u64(b, "other", UINT64_MAX));
	CHECK_OK(b, lmbox_store_get_u64(b, "pop3.last_login", &value));
	CHECK(value == 1700000000);
	CHECK_OK(b, lmbox_store_get_u64(b, "other", &value));
	CHECK(value == UINT64_MAX);
	{
		char name[80];
		memset(name, 'n', 65);
		name[65] = '\0';
		CHECK_ERR(b, lmbox_store_set_u64(b, name, 1), LMBOX_ERR_INVALID);
		CHECK_ERR(b, lmbox_store_set_u64(b, "", 1), LMBOX_ERR_INVALID);
	}
	lmbox_store_close(&b);

	/* read-only: reads work, writes are refused */
	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_RDONLY;
	CHECK_OK(NULL, lmbox_store_open(test_path("shared"), &opts, &ro, &err));
	CHECK_OK(ro, lmbox_folder_lookup(ro, "INBOX", &info));
	CHECK(info.count == 1);
	CHECK_OK(ro, lmbox_store_get_u64(ro, "other", &value));
	CHECK_ERR(ro, lmbox_folder_create(ro, "x", 0, NULL, NULL), LMBOX_ERR_READONLY);
	CHECK_ERR(ro, lmbox_store_set_u64(ro, "x", 1), LMBOX_ERR_READONLY);
	CHECK_ERR(ro, lmbox_txn_begin(ro, &txn), LMBOX_ERR_READONLY);
	CHECK(strstr(lmbox_store_errmsg(ro), "read-only") != NULL);
	lmbox_store_close(&ro);
}

/* Write a newer format number straight into the LMDB file. */
static void set_format(const char *dir, uint32_t format)
{
	char path[600];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 6, (void *)"format" }, v;
	unsigned char buf[4] = { format, format >> 8, format >> 16, format >> 24 };

	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	CHECK(mdb_env_create(&env) == 0);
	mdb_env_set_maxdbs(env, 16);
	CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	v.mv_data = buf;
	v.mv_size = 4;
	CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
}

static void test_version(void)
{
	struct lmbox_store *store;
	struct lmbox_store_stat st;
	const char *err;

	store = test_open("version", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_store_stat(store, &st));
	/* format 2 only while expunges are pending (test-pending.c) */
	CHECK(st.format_version == LMBOX_FORMAT_BASE);
	lmbox_store_close(&store);

	set_format(test_path("version"), LMBOX_FORMAT_VERSION + 1);
	CHECK_ERR(NULL, lmbox_store_open(test_path("version"), NULL, &store, &err),
		  LMBOX_ERR_VERSION);
	CHECK(store == NULL);
	CHECK(err != NULL && strstr(err, "newer") != NULL);
	set_format(test_path("version"), LMBOX_FORMAT_VERSION);
	CHECK_OK(NULL, lmbox_store_open(test_path("version"), NULL, &store, &err));
	lmbox_store_close(&store);
}

/* A truncated lmbox.mdb is refused at open, not a SIGBUS later. */
static void test_truncated_mdb(void)
{
	struct lmbox_store *store;
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct stat st;
	const char *err;
	char path[600];
	uint32_t f;

	store = test_open("trunc", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (int i = 0; i < 2000; i++) {
		CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
		CHECK_OK(store, lmbox_append_write(append, "x\n", 2));
		CHECK(lmbox_append_finish(&append) == i);
	}
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	lmbox_store_close(&store);
	snprintf(path, sizeof(path), "%s/lmbox.mdb", test_path("trunc"));
	CHECK(stat(path, &st) == 0 && st.st_size > 8 * 4096);
	CHECK(truncate(path, st.st_size / 2) == 0);
	CHECK_ERR(NULL, lmbox_store_open(test_path("trunc"), NULL, &store, &err),
		  LMBOX_ERR_CORRUPT);
	CHECK(err != NULL && strstr(err, "truncated") != NULL);
}

static void test_fork(void)
{
	struct lmbox_store *store, *child_store;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	uint32_t f;
	pid_t pid;
	int status;

	store = test_open("fork", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	pid = fork();
	if (pid == 0) {
		int bad = 0;
		struct lmbox_txn *txn;

		/* the parent's handles refuse to work here */
		if (lmbox_folder_get(store, f, &info) != LMBOX_ERR_FORK)
			bad++;
		if (lmbox_txn_begin(store, &txn) != LMBOX_ERR_FORK)
			bad++;
		if (lmbox_reader_msg(reader, f, 1, NULL) != LMBOX_ERR_FORK)
			bad++;
		if (strstr(lmbox_store_errmsg(store), "fork") == NULL)
			bad++;
		lmbox_reader_end(&reader);
		lmbox_store_close(&store);
		/* a store opened in the child works */
		child_store = test_open("fork", 0);
		if (test_append(child_store, f, "from child\n", 11, NULL) != 1)
			bad++;
		lmbox_store_close(&child_store);
		_exit(bad != 0 || test_failures != 0 ? 1 : 0);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the parent's reader still sees its snapshot; a new one the mail */
	CHECK_OK(store, lmbox_reader_folder(reader, f, &info));
	CHECK(info.count == 0);
	lmbox_reader_end(&reader);
	CHECK_OK(store, lmbox_folder_get(store, f, &info));
	CHECK(info.count == 1);
	lmbox_store_close(&store);
}

int main(void)
{
	test_init();
	test_open_errors();
	test_strerror();
	test_shared_and_rdonly();
	test_version();
	test_truncated_mdb();
	test_fork();
	return test_exit();
}
