/*
 * test-concurrent: several processes use one store at once: appenders,
 * an expunger and a reader that reads every body it sees.  Afterwards the
 * store checks clean and its counters equal what was done.  (Kill -9 and
 * churn live in tests/fault; this is the unit-level sanity check.)
 */
#include <sys/wait.h>

#include "test-common.h"

#define APPENDERS 3
#define PER_APPENDER 150

static uint32_t folder;

static int appender(int n)
{
	struct lmbox_store *store = test_open("conc", 0);
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	char body[3000];
	int done = 0;

	while (done < PER_APPENDER) {
		int batch = 1 + done % 4;

		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		for (int i = 0; i < batch && done < PER_APPENDER; i++, done++) {
			int len = snprintf(body, sizeof(body), "From: p%d\nSubject: %d\n\n", n, done);
			for (int j = 0; j < done * 7 % 2500; j++)
				body[len++] = j % 70 == 69 ? '\n' : (char)('a' + (j + n) % 26);
			CHECK_OK(store, lmbox_append_begin(txn, folder, NULL, &append));
			CHECK_OK(store, lmbox_append_write(append, body, (size_t)len));
			CHECK(lmbox_append_finish(&append) == i);
		}
		CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	}
	lmbox_store_close(&store);
	return test_failures;
}

static int expunger(void)
{
	struct lmbox_store *store = test_open("conc", 0);
	struct lmbox_txn *txn;
	struct lmbox_commit_result result;
	int expunged = 0;

	for (int round = 0; round < 60; round++) {
		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		for (uint32_t uid = 1; uid < APPENDERS * PER_APPENDER; uid += 3)
			CHECK_OK(store, lmbox_txn_expunge(txn, folder, uid));
		CHECK_OK(store, lmbox_txn_commit(&txn, &result));
		expunged += (int)result.expunged;
		lmbox_commit_result_free(&result);
		usleep(2000);
	}
	lmbox_store_close(&store);
	/* report how many through the exit status' absence of failures */
	return test_failures;
}

static int reader_proc(void)
{
	struct lmbox_store *store = test_open("conc", 0);
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	unsigned char *data;
	size_t size;
	int ret;

	for (int round = 0; round < 30; round++) {
		CHECK_OK(store, lmbox_reader_begin(store, &reader));
		CHECK_OK(store, lmbox_msg_iter_init(reader, folder, 1, &iter));
		while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
			ret = lmbox_body_read_all(store, &meta, &data, &size);
			/* expunged after our snapshot: NOTFOUND is fine */
			if (ret == 0) {
				CHECK(size == meta.phys_size);
				CHECK(memcmp(data, "From: p", 7) == 0);
				free(data);
			} else {
				CHECK_ERR(store, ret, LMBOX_ERR_NOTFOUND);
			}
		}
		CHECK_OK(store, ret);
		lmbox_msg_iter_deinit(&iter);
		lmbox_reader_end(&reader);
	}
	lmbox_store_close(&store);
	return test_failures;
}

int main(void)
{
	struct lmbox_store *store;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	pid_t pids[APPENDERS + 2];
	uint64_t vsize = 0;
	uint32_t count = 0, last_uid = 0;
	int status, ret;

	test_init();
	store = test_open("conc", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	lmbox_store_close(&store);

	for (int i = 0; i < APPENDERS + 2; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			_exit(i < APPENDERS ? appender(i) :
			      i == APPENDERS ? expunger() : reader_proc());
		}
		CHECK(pids[i] > 0);
	}
	for (int i = 0; i < APPENDERS + 2; i++) {
		CHECK(waitpid(pids[i], &status, 0) == pids[i]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}

	store = test_open("conc", 0);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_folder(reader, folder, &info));
	CHECK(info.next_uid == APPENDERS * PER_APPENDER + 1);
	CHECK_OK(store, lmbox_msg_iter_init(reader, folder, 0, &iter));
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		CHECK(meta.uid > last_uid);
		last_uid = meta.uid;
		count++;
		vsize += meta.virt_size;
	}
	CHECK_OK(store, ret);
	CHECK(info.count == count && info.vsize_total == vsize);
	if (getenv("LMBOX_TEST_VERBOSE") != NULL)
		printf("%u messages left, next_uid %u\n", count, info.next_uid);
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	lmbox_store_close(&store);
	return test_exit();
}
