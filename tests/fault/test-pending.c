/*
 * test-pending.c: kill -9 around pending expunges (storage/lmbox-pending.c).
 *
 * 1. A writer opened as the plugin opens (LMBOX_OPEN_DEFER_RECLAIM)
 *    commits a POP3-QUIT-like expunge of every 10th message and is killed
 *    before it closes the store (before the purge).
 * 2. A second process starts the purge (lmbox_store_reclaim) and is killed
 *    inside its write transaction (LMBOX_TEST_KILL_IN_PURGE).
 * 3. A third one closes the store normally: the purge completes.
 * After each step a fresh process checks: the expunged messages are gone
 * for every reader, the others are all there and byte-for-byte intact,
 * counters match, lmbox_check finds nothing, lmbox_store_stat and `lmbox
 * stat` count the pending expunges; after step 3 the store is
 * back at format 1 and the dead space is recorded nowhere any more.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "fault-util.h"

#define NMSG 2000

static char *dir;
static uint32_t folder;
static int step;

static size_t key_size(uint32_t key)
{
	return 300 + (key * 2654435761u) % 6000;
}

static int expunged(uint32_t uid)
{
	return uid % 10 == 3;
}

static struct lmbox_store *open_store(unsigned int flags)
{
	struct lmbox_store_opts opts;

	lmbox_store_opts_init(&opts);
	opts.flags = flags;
	opts.fsync = LMBOX_FSYNC_ALWAYS;
	return fault_open_opts(dir, &opts);
}

/* The "pending expunges" count `lmbox stat DIR` prints (the CLI that
   make check exports as $LMBOX), or -1 if it has no such line. */
static long cli_pending_expunges(void)
{
	const char *lmbox = getenv("LMBOX");
	char cmd[4096], line[512];
	long n = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "'%s' stat '%s'",
		 lmbox != NULL ? lmbox : "../../storage/lmbox", dir);
	f = popen(cmd, "r");
	CHECK(f != NULL, "popen %s", cmd);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "pending expunges ", 17) == 0)
			n = strtol(line + 17, NULL, 10);
	}
	CHECK(pclose(f) == 0, "%s failed", cmd);
	return n;
}

static int verify_main(void *arg)
{
	int purged = *(int *)arg;
	struct lmbox_store *store = open_store(LMBOX_OPEN_RDONLY);
	struct lmbox_store_stat st;
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	unsigned char *want, *got;
	size_t want_len, got_len;
	uint32_t expect = 1, count = 0;
	int ret;

	ret = fault_check(store, LMBOX_CHECK_BODIES, 1);
	CHECK(ret == 0, "step %d: lmbox_check found %d problems", step, ret);
	CHECK_LM(store, lmbox_store_stat(store, &st), "stat");
	CHECK(st.format_version == (purged ? LMBOX_FORMAT_BASE : LMBOX_FORMAT_PENDING),
	      "step %d: format %u", step, st.format_version);
	CHECK(st.pending_expunges == (purged ? 0 : NMSG / 10),
	      "step %d: stat says %llu pending expunges", step,
	      (unsigned long long)st.pending_expunges);
	CHECK(cli_pending_expunges() == (purged ? 0 : NMSG / 10),
	      "step %d: lmbox stat says %ld pending expunges", step, cli_pending_expunges());
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	CHECK_LM(store, lmbox_reader_folder(reader, folder, &info), "folder");
	CHECK(info.count == NMSG - NMSG / 10, "step %d: counter %u", step, info.count);
	CHECK_LM(store, lmbox_msg_iter_init(reader, folder, 1, &iter), "iter");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		while (expunged(expect))
			expect++;
		CHECK(meta.uid == expect, "step %d: UID %u, expected %u", step, meta.uid, expect);
		want = fault_gen_mail(meta.uid, key_size(meta.uid), &want_len);
		CHECK_LM(store, lmbox_body_read_all(store, &meta, &got, &got_len), "body");
		CHECK(got_len == want_len && memcmp(got, want, want_len) == 0,
		      "step %d: body of UID %u differs", step, meta.uid);
		free(want);
		free(got);
		expect++;
		count++;
	}
	CHECK_LM(store, ret, "iter");
	lmbox_msg_iter_deinit(&iter);
	CHECK(count == info.count, "step %d: %u messages, counter %u", step, count, info.count);
	for (uint32_t uid = 3; uid <= NMSG; uid += 10) {
		CHECK(lmbox_reader_msg(reader, folder, uid, &meta) == LMBOX_ERR_NOTFOUND,
		      "step %d: expunged UID %u is visible", step, uid);
	}
	lmbox_reader_end(&reader);
	lmbox_store_close(&store);
	return 0;
}

static void verify(int purged)
{
	fault_run_child("verify", verify_main, &purged);
}

static void fill(void)
{
	struct lmbox_store *store = open_store(LMBOX_OPEN_CREATE);
	struct lmbox_append *append;
	struct lmbox_txn *txn = NULL;
	unsigned char *data;
	size_t len;

	folder = fault_folder(store, "INBOX");
	for (uint32_t key = 1; key <= NMSG; key++) {
		if (txn == NULL)
			CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		data = fault_gen_mail(key, key_size(key), &len);
		CHECK_LM(store, lmbox_append_begin(txn, folder, NULL, &append), "append");
		CHECK_LM(store, lmbox_append_write(append, data, len), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		free(data);
		if (key % 250 == 0)
			CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit");
	}
	lmbox_store_close(&store);
}

/* Returns how the child ended. */
static int run_and_die(void (*fn)(void))
{
	pid_t pid = fault_fork();

	if (pid == 0) {
		fn();
		_exit(0);
	}
	return fault_wait(pid);
}

static void quit_then_die(void)
{
	struct lmbox_store *store = open_store(LMBOX_OPEN_DEFER_RECLAIM);
	struct lmbox_commit_result res;
	struct lmbox_txn *txn;

	CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
	for (uint32_t uid = 3; uid <= NMSG; uid += 10)
		CHECK_LM(store, lmbox_txn_expunge(txn, folder, uid), "expunge");
	CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
	CHECK(res.expunged == NMSG / 10, "expunged %u", res.expunged);
	lmbox_commit_result_free(&res);
	/* the client has its "+OK"; the process dies before the close */
	raise(SIGKILL);
}

static void purge_and_die(void)
{
	struct lmbox_store *store = open_store(LMBOX_OPEN_DEFER_RECLAIM);

	setenv("LMBOX_TEST_KILL_IN_PURGE", "1", 1);
	(void)lmbox_store_reclaim(store);
	FAIL("the purge did not run (nothing pending?)");
}

static void close_normally(void)
{
	struct lmbox_store *store = open_store(LMBOX_OPEN_DEFER_RECLAIM);

	lmbox_store_close(&store);
}

int main(void)
{
	struct lmbox_store *store;
	struct lmbox_store_stat st;
	char buf[128];
	int status;

	setvbuf(stdout, NULL, _IOLBF, 0);
	unsetenv("LMBOX_TEST_PENDING_MIN");
	dir = fault_mkdtemp("pending");
	fault_rmtree_at_exit(dir);
	fill();

	step = 1;
	status = run_and_die(quit_then_die);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "step 1: writer %s",
	      fault_status_str(status, buf, sizeof(buf)));
	verify(0);

	step = 2;
	status = run_and_die(purge_and_die);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "step 2: purger %s",
	      fault_status_str(status, buf, sizeof(buf)));
	verify(0);

	step = 3;
	status = run_and_die(close_normally);
	CHECK(fault_exited(status, 0), "step 3: %s", fault_status_str(status, buf, sizeof(buf)));
	verify(1);

	store = open_store(0);
	CHECK_LM(store, lmbox_store_stat(store, &st), "stat");
	CHECK(st.reclaim_pending == 0, "%llu reclaim records left",
	      (unsigned long long)st.reclaim_pending);
	lmbox_store_close(&store);
	printf("pending expunges: killed after the commit and inside the purge, "
	       "then purged; all intact\n");
	fault_rmtree(dir);
	free(dir);
	return 0;
}
