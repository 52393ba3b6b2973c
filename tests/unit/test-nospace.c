/*
 * test-nospace: a segment write that fails (here: the file size limit,
 * RLIMIT_FSIZE, standing in for a full disk) fails the commit with a
 * temporary error and leaves the store exactly as before; once space is
 * back the same store takes mail again and checks clean.
 */
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "test-common.h"

static void fill(unsigned char *buf, size_t size)
{
	uint32_t x = 7;

	for (size_t i = 0; i < size; i++) {
		x = x * 1103515245 + 12345;
		buf[i] = (unsigned char)(x >> 16);
	}
}

static int child(uint32_t f)
{
	struct lmbox_store *store = test_open("nospace", 0);
	struct lmbox_folder_info before, after;
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct rlimit rl = { 200 * 1024, 200 * 1024 };
	unsigned char *body = malloc(300 * 1024);
	int ret;

	fill(body, 300 * 1024);
	signal(SIGXFSZ, SIG_IGN);
	CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
	CHECK_OK(store, lmbox_folder_get(store, f, &before));
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, f, NULL, &append));
	/* stays in memory below 1 MiB: only the segment write hits the limit */
	CHECK_OK(store, lmbox_append_write(append, body, 300 * 1024));
	CHECK(lmbox_append_finish(&append) == 0);
	CHECK_OK(store, lmbox_txn_expunge(txn, f, 1));
	ret = lmbox_txn_commit(&txn, NULL);
	CHECK_ERR(store, ret, LMBOX_ERR_NOSPACE);
	CHECK(lmbox_error_is_temporary(ret));
	CHECK(strstr(lmbox_store_errmsg(store), "seg/") != NULL);
	CHECK_OK(store, lmbox_folder_get(store, f, &after));
	CHECK(memcmp(&before, &after, sizeof(before)) == 0);
	/* small mail still fits */
	CHECK(test_append(store, f, "small\n", 6, NULL) == 2);
	lmbox_store_close(&store);
	free(body);
	return test_failures;
}

int main(void)
{
	struct lmbox_store *store;
	struct lmbox_folder_info info;
	uint32_t f;
	pid_t pid;
	int status;

	test_init();
	store = test_open("nospace", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &f));
	CHECK(test_append(store, f, "one\n", 4, NULL) == 1);
	pid = fork();
	if (pid == 0)
		_exit(child(f) != 0);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	CHECK_OK(store, lmbox_folder_get(store, f, &info));
	CHECK(info.count == 2 && info.next_uid == 3);
	{
		unsigned char *body = malloc(300 * 1024);
		fill(body, 300 * 1024);
		CHECK(test_append(store, f, body, 300 * 1024, NULL) == 3);
		free(body);
	}
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	return test_exit();
}
