#ifndef TEST_COMMON_H
#define TEST_COMMON_H
/*
 * test-common.h: the few helpers the unit tests share: failing checks that
 * print where and why, a scratch directory removed at exit, and shortcuts
 * to open a store and save a message.
 */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmbox.h"

static int test_failures;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #cond); \
		test_failures++; \
	} \
} while (0)

/* ret must be 0 (or >= 0); on failure show the store's errmsg */
#define CHECK_OK(store, expr) do { \
	long _r = (long)(expr); \
	if (_r < 0) { \
		fprintf(stderr, "%s:%d: FAIL: %s = %ld (%s): %s\n", __FILE__, __LINE__, \
			#expr, _r, lmbox_strerror((int)_r), \
			(store) != NULL ? lmbox_store_errmsg(store) : "-"); \
		test_failures++; \
	} \
} while (0)

#define CHECK_ERR(store, expr, code) do { \
	long _r = (long)(expr); \
	if (_r != (code)) { \
		fprintf(stderr, "%s:%d: FAIL: %s = %ld, expected %d (%s); errmsg: %s\n", \
			__FILE__, __LINE__, #expr, _r, (code), lmbox_strerror(code), \
			(store) != NULL ? lmbox_store_errmsg(store) : "-"); \
		test_failures++; \
	} \
} while (0)

static char test_dir[256];

static __attribute__((unused)) int test_rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st; (void)type; (void)ftw;
	return remove(path);
}

static __attribute__((unused)) void test_cleanup(void)
{
	if (test_dir[0] != '\0' && getenv("LMBOX_TEST_KEEP") == NULL)
		nftw(test_dir, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static __attribute__((unused)) void test_init(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(test_dir, sizeof(test_dir), "%s/lmbox-unit.XXXXXX",
		 base != NULL ? base : "/tmp");
	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	atexit(test_cleanup);
}

/* A store path inside the scratch dir. */
static __attribute__((unused)) const char *test_path(const char *name)
{
	static char buf[4][512];
	static int n;

	n = (n + 1) % 4;
	snprintf(buf[n], sizeof(buf[n]), "%s/%s", test_dir, name);
	return buf[n];
}

static __attribute__((unused)) struct lmbox_store *test_open(const char *name, unsigned int flags)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	const char *err;
	int ret;

	lmbox_store_opts_init(&opts);
	opts.flags = flags;
	opts.fsync = LMBOX_FSYNC_NEVER;
	ret = lmbox_store_open(test_path(name), &opts, &store, &err);
	if (ret < 0) {
		fprintf(stderr, "open %s failed: %s: %s\n", name, lmbox_strerror(ret), err);
		exit(1);
	}
	return store;
}

/* Save one message; returns its UID (0 on failure). */
static __attribute__((unused)) uint32_t test_append(struct lmbox_store *store, uint32_t folder_id,
			    const void *data, size_t size,
			    const struct lmbox_append_opts *opts)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_commit_result result;
	uint32_t uid = 0;
	int seq;

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, folder_id, opts, &append));
	if (size > 0)
		CHECK_OK(store, lmbox_append_write(append, data, size));
	seq = lmbox_append_finish(&append);
	CHECK(seq == 0);
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	if (result.uid_count == 1)
		uid = result.uids[0];
	lmbox_commit_result_free(&result);
	return uid;
}

/* A deterministic xorshift64 step: the next 32 bits of *state's stream. */
static __attribute__((unused)) uint32_t test_xorshift(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return (uint32_t)(*state >> 16);
}

static __attribute__((unused)) int test_exit(void)
{
	if (test_failures > 0) {
		fprintf(stderr, "%d check(s) failed\n", test_failures);
		return 1;
	}
	return 0;
}

#endif
