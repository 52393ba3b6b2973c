/*
 * test-readers.c: LMDB reader slots under many sessions and dead sessions.
 *
 * The store is created with only READERS reader slots.  Then:
 * 1. 3 x READERS processes, one after another, each open the store, start
 *    a reader, scan, and are killed with SIGKILL while the reader is open
 *    (a pop3 process dying mid-login): their slots go stale, and every
 *    later open must still succeed (stale slots cleared on open).
 * 2. READERS - 2 processes hold readers at the same time while a writer
 *    delivers and expunges: the writer is not blocked (SIGALRM guards) and
 *    the readers' snapshots stay consistent.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "fault-util.h"

#define READERS 16
#define NMSG 20

static char *dir;

static struct lmbox_store *open_store(void)
{
	struct lmbox_store_opts opts;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.max_readers = READERS;
	return fault_open_opts(dir, &opts);
}

static int setup_main(void *arg)
{
	struct lmbox_store *store = open_store();
	uint32_t folder = fault_folder(store, "INBOX");
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	unsigned char *data;
	size_t len;
	unsigned int i;

	(void)arg;
	for (i = 0; i < NMSG; i++) {
		data = fault_gen_mail(i, 3000, &len);
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder, NULL, &append), "append");
		CHECK_LM(store, lmbox_append_write(append, data, len), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit");
		free(data);
	}
	lmbox_store_close(&store);
	return 0;
}

/* Open, begin a reader, scan; tell the parent the count; hold the reader
 * until the parent closes `hold` (or kills us). */
static void session_main(int report_fd, int hold_fd)
{
	struct lmbox_store *store = open_store();
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	uint32_t count = 0, again = 0;
	char c;
	int ret;

	alarm(60);
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader begin");
	CHECK_LM(store, lmbox_reader_folder_by_name(reader, "INBOX", &info), "folder");
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0)
		count++;
	CHECK_LM(store, ret, "iter");
	lmbox_msg_iter_deinit(&iter);
	CHECK(count == info.count, "snapshot %u vs counter %u", count, info.count);
	fault_write_all(report_fd, &count, sizeof(count));
	(void)fault_read_all(hold_fd, &c, 1);
	/* the snapshot did not move while writers worked */
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0)
		again++;
	lmbox_msg_iter_deinit(&iter);
	CHECK(again == count, "snapshot changed under a reader: %u -> %u", count, again);
	lmbox_reader_end(&reader);
	lmbox_store_close(&store);
	_exit(0);
}

static int writer_main(void *arg)
{
	struct lmbox_store *store = open_store();
	uint32_t folder = fault_folder(store, "INBOX");
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	unsigned char *data;
	size_t len;
	unsigned int i;

	(void)arg;
	alarm(60);
	for (i = 0; i < 100; i++) {
		data = fault_gen_mail(1000 + i, 2000, &len);
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder, NULL, &append), "append");
		CHECK_LM(store, lmbox_append_write(append, data, len), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit while readers are open");
		/* and take one away again: old pages stay pinned by the readers */
		if (i % 2 == 1) {
			uint32_t uid = res.uids[0];

			lmbox_commit_result_free(&res);
			CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
			CHECK_LM(store, lmbox_txn_expunge(txn, folder, uid), "expunge");
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "expunge commit");
		}
		lmbox_commit_result_free(&res);
		free(data);
	}
	CHECK(fault_check(store, 0, 1) == 0, "check not clean");
	lmbox_store_close(&store);
	return 0;
}

int main(void)
{
	int report[2], hold[2], status;
	pid_t pids[READERS];
	unsigned int i;
	uint32_t count;
	char buf[128];
	double t0 = fault_now();

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = fault_mkdtemp("readers");
	fault_rmtree_at_exit(dir);
	fault_run_child("setup", setup_main, NULL);

	/* 1. sessions die holding their reader slot */
	for (i = 0; i < 3 * READERS; i++) {
		CHECK(pipe(report) == 0 && pipe(hold) == 0, "pipe");
		pids[0] = fault_fork();
		if (pids[0] == 0) {
			close(report[0]);
			close(hold[1]);
			session_main(report[1], hold[0]);
		}
		close(report[1]);
		close(hold[0]);
		if (fault_read_all(report[0], &count, sizeof(count)) != 1) {
			status = fault_wait(pids[0]);
			FAIL("session %u (after %u killed with an open reader): %s", i, i,
			     fault_status_str(status, buf, sizeof(buf)));
		}
		CHECK(count == NMSG, "session %u saw %u messages", i, count);
		kill(pids[0], SIGKILL);
		status = fault_wait(pids[0]);
		CHECK(WIFSIGNALED(status), "session %u: %s", i,
		      fault_status_str(status, buf, sizeof(buf)));
		close(report[0]);
		close(hold[1]);
	}
	printf("%u sessions killed with an open reader (%d slots): every open succeeded\n",
	       3 * READERS, READERS);

	/* 2. many concurrent readers, a writer among them */
	CHECK(pipe(report) == 0 && pipe(hold) == 0, "pipe");
	for (i = 0; i < READERS - 2; i++) {
		pids[i] = fault_fork();
		if (pids[i] == 0) {
			close(report[0]);
			close(hold[1]);
			session_main(report[1], hold[0]);
		}
	}
	close(report[1]);
	close(hold[0]);
	for (i = 0; i < READERS - 2; i++) {
		CHECK(fault_read_all(report[0], &count, sizeof(count)) == 1,
		      "a concurrent session failed");
		CHECK(count == NMSG, "a session saw %u messages", count);
	}
	fault_run_child("writer with readers open", writer_main, NULL);
	close(hold[1]);
	for (i = 0; i < READERS - 2; i++) {
		status = fault_wait(pids[i]);
		CHECK(fault_exited(status, 0), "reader %u: %s", i,
		      fault_status_str(status, buf, sizeof(buf)));
	}
	close(report[0]);
	printf("%d concurrent readers and a writer: ok (%.1f s)\n", READERS - 2,
	       fault_now() - t0);
	fault_rmtree(dir);
	free(dir);
	return 0;
}
