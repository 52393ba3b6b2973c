/*
 * test-map-resized.c: a store opened while another process grows its LMDB
 * map.  Found by the benchmark: with 4 concurrent LMTP deliveries to one
 * user, a delivery whose mdb_env_open() came just before another one's
 * map growth failed its first transaction with MDB_MAP_RESIZED ("Opening
 * store failed"), a temporary error for the MTA but an error in Dovecot's
 * log.  Deterministic here: the child opening the store stops itself right
 * after mdb_env_open() (LMBOX_TEST_STOP_AFTER_ENV_OPEN); the parent then
 * grows the map by delivering until it is several times larger, and lets
 * the child go on; its open, a delivery and a read must all work.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault-util.h"

#define MAP_INITIAL (256 * 1024)

static char *dir;

static struct lmbox_store *open_small(void)
{
	struct lmbox_store_opts opts;

	lmbox_store_opts_init(&opts);
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.map_initial = MAP_INITIAL;
	opts.flags |= LMBOX_OPEN_CREATE;
	return fault_open_opts(dir, &opts);
}

static uint64_t map_size(struct lmbox_store *store)
{
	struct lmbox_store_stat st;

	CHECK_LM(store, lmbox_store_stat(store, &st), "stat");
	return st.map_size;
}

static void deliver(struct lmbox_store *store, uint32_t folder, unsigned int count)
{
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	char uidl[80];

	CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
	for (unsigned int i = 0; i < count; i++) {
		struct lmbox_append_opts opts;

		lmbox_append_opts_init(&opts);
		/* long UIDLs: the UIDL index grows the map quickly */
		snprintf(uidl, sizeof(uidl), "%060u-%u", i, (unsigned int)getpid());
		opts.uidl = uidl;
		CHECK_LM(store, lmbox_append_begin(txn, folder, &opts, &append), "append");
		CHECK_LM(store, lmbox_append_write(append, "Subject: x\n\nbody\n", 17), "write");
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
	}
	CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
	lmbox_commit_result_free(&res);
}

static int child_main(void *arg)
{
	struct lmbox_store *store;
	struct lmbox_folder_info info;

	(void)arg;
	setenv("LMBOX_TEST_STOP_AFTER_ENV_OPEN", "1", 1);
	store = open_small();
	unsetenv("LMBOX_TEST_STOP_AFTER_ENV_OPEN");
	CHECK_LM(store, lmbox_folder_lookup(store, "INBOX", &info), "lookup");
	deliver(store, info.id, 10);
	CHECK_LM(store, lmbox_folder_lookup(store, "INBOX", &info), "lookup");
	CHECK(info.count == 20010, "INBOX has %u messages, want 20010", info.count);
	lmbox_store_close(&store);
	return 0;
}

int main(void)
{
	struct lmbox_store *store;
	uint32_t folder;
	uint64_t before, after;
	pid_t pid;
	int status;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = fault_mkdtemp("resized");
	fault_rmtree_at_exit(dir);
	store = open_small();
	folder = fault_folder(store, "INBOX");
	before = map_size(store);
	lmbox_store_close(&store);

	pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0)
		_exit(child_main(NULL));
	/* the child stops itself after mdb_env_open() */
	CHECK(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status),
	      "child did not stop after mdb_env_open (status 0x%x)", status);

	store = open_small();
	for (int i = 0; i < 20; i++)
		deliver(store, folder, 1000);
	after = map_size(store);
	lmbox_store_close(&store);
	CHECK(after >= 4 * before, "map grew only from %llu to %llu bytes",
	      (unsigned long long)before, (unsigned long long)after);

	CHECK(kill(pid, SIGCONT) == 0, "SIGCONT");
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(fault_exited(status, 0), "child opening during the map growth failed (status 0x%x)",
	      status);
	printf("store opened across a map growth %llu -> %llu bytes: open, delivery, read ok\n",
	       (unsigned long long)before, (unsigned long long)after);
	return 0;
}
