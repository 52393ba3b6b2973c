/*
 * test-concurrent.c: several processes on one store at once.
 *
 * 1. Appenders and readers: WRITERS processes each append MSGS messages
 *    (one commit each, some large enough to spill) while READERS processes
 *    scan and read in a loop.  Afterwards every committed message is there
 *    exactly once with the UID its commit returned, UIDs increase in commit
 *    order, bodies are intact and lmbox_check() finds nothing.  Readers
 *    check every snapshot: UIDs strictly increasing, count matching the
 *    folder's counter, never shrinking, bodies intact.
 * 2. Readers are never blocked by a writer: a fresh process opens the
 *    store, scans and reads a body while another process is committing a
 *    64 MB message; and (built with -DREADER_UNDER_LOCK as
 *    test-reader-under-lock) while another process holds LMDB's write lock
 *    in an open write transaction -- what every commit does for a moment.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <lmdb.h>

#include "fault-util.h"

#define WRITERS 3
#define MSGS 150
#define READERS 2
#define BIG_MSG (64u * 1024 * 1024)

#ifdef READER_UNDER_LOCK
/* built as test-reader-under-lock: its own TESTS entry */
static const int reader_under_lock = 1;
#else
static const int reader_under_lock = 0;
#endif
static char *dir;

struct rec {
	uint32_t writer, seq, uid, pad;
};

static uint64_t msg_key(uint32_t writer, uint32_t seq)
{
	return ((uint64_t)writer << 32) | seq;
}

static size_t msg_size(uint32_t writer, uint32_t seq)
{
	/* every 25th message large enough to go to a spill file */
	return seq % 25 == 7 ? 300000 + writer * 1000 : 800 + (seq * 37 + writer * 101) % 9000;
}

static void check_body(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
		       uint32_t writer, uint32_t seq)
{
	unsigned char *want, *got;
	size_t want_len, got_len;

	want = fault_gen_mail(msg_key(writer, seq), msg_size(writer, seq), &want_len);
	CHECK_LM(store, lmbox_body_read_all(store, meta, &got, &got_len), "body read");
	CHECK(got_len == want_len && memcmp(got, want, want_len) == 0,
	      "body of w%u-%u (UID %u) differs", writer, seq, meta->uid);
	CHECK(meta->phys_size == want_len, "psize %llu != %zu",
	      (unsigned long long)meta->phys_size, want_len);
	free(want);
	free(got);
}

static int parse_uidl(const char *uidl, uint32_t *writer, uint32_t *seq)
{
	return sscanf(uidl, "w%u-%u", writer, seq) == 2 ? 0 : -1;
}

static int writer_main(uint32_t w, int out_fd)
{
	struct lmbox_store_opts sopts;
	struct lmbox_store *store;
	uint32_t folder, prev = 0, seq;
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	unsigned char *data;
	char uidl[32];
	size_t len;
	struct rec r;

	lmbox_store_opts_init(&sopts);
	sopts.flags = LMBOX_OPEN_CREATE;
	sopts.fsync = w == 0 ? LMBOX_FSYNC_ALWAYS : LMBOX_FSYNC_NEVER;
	/* writer 2 rotates often: segments fill, are sealed and created
	 * while the others hold claims on theirs */
	if (w == 2)
		sopts.segment_max = 512 * 1024;
	store = fault_open_opts(dir, &sopts);
	folder = fault_folder(store, "INBOX");
	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	for (seq = 0; seq < MSGS; seq++) {
		snprintf(uidl, sizeof(uidl), "w%u-%u", w, seq);
		data = fault_gen_mail(msg_key(w, seq), msg_size(w, seq), &len);
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn begin");
		CHECK_LM(store, lmbox_append_begin(txn, folder, &opts, &append), "append begin");
		/* in pieces, as LMTP hands them over */
		CHECK_LM(store, lmbox_append_write(append, data, len / 3), "append write");
		CHECK_LM(store, lmbox_append_write(append, data + len / 3, len - len / 3),
			 "append write");
		CHECK_LM(store, lmbox_append_finish(&append), "append finish");
		/* bodies written and synced outside the write lock, as the
		 * plugin does; the commit does it itself otherwise */
		if (seq % 2 == 1)
			CHECK_LM(store, lmbox_txn_prepare(txn), "prepare");
		CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
		CHECK(res.uid_count == 1 && res.uids[0] > prev,
		      "writer %u: commit gave UID %u after %u", w,
		      res.uid_count == 1 ? res.uids[0] : 0, prev);
		prev = res.uids[0];
		lmbox_commit_result_free(&res);
		free(data);
		r.writer = w;
		r.seq = seq;
		r.uid = prev;
		r.pad = 0;
		fault_write_all(out_fd, &r, sizeof(r));
	}
	lmbox_store_close(&store);
	return 0;
}

/* One snapshot: UIDs strictly increasing, count as the folder says, one
 * random body intact.  Returns the count. */
static uint32_t reader_pass(struct lmbox_store *store, struct fault_rng *rng)
{
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta, pick;
	uint32_t count = 0, prev = 0, w, s, pick_w = 0, pick_s = 0;
	int ret, have_pick = 0;

	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader begin");
	ret = lmbox_reader_folder_by_name(reader, "INBOX", &info);
	if (ret == LMBOX_ERR_NOTFOUND) {
		lmbox_reader_end(&reader);
		return 0;
	}
	CHECK_LM(store, ret, "folder by name");
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter init");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		CHECK(meta.uid > prev, "snapshot: UID %u after %u", meta.uid, prev);
		prev = meta.uid;
		count++;
		if (strcmp(meta.uidl, "big") == 0)
			continue;       /* phase 3's message */
		CHECK(parse_uidl(meta.uidl, &w, &s) == 0, "foreign UIDL %s", meta.uidl);
		if (fault_rng_below(rng, count) == 0) {
			pick = meta;
			pick_w = w;
			pick_s = s;
			have_pick = 1;
		}
	}
	CHECK_LM(store, ret, "iter next");
	lmbox_msg_iter_deinit(&iter);
	CHECK(count == info.count, "snapshot: %u messages, folder counter says %u",
	      count, info.count);
	if (have_pick) {
		/* the body needs no reader, but meta.uidl is not used after this */
		check_body(store, &pick, pick_w, pick_s);
	}
	lmbox_reader_end(&reader);
	return count;
}

static int reader_main(int done_fd, uint64_t seed)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct fault_rng rng = { seed };
	struct pollfd pfd = { .fd = done_fd, .events = POLLIN };
	uint32_t last = 0, count;
	unsigned int passes = 0;
	const char *errmsg;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	CHECK_LM(NULL, lmbox_store_open(dir, &opts, &store, &errmsg), "reader open");
	/* until the parent closes done_fd */
	while (poll(&pfd, 1, 0) == 0) {
		count = reader_pass(store, &rng);
		CHECK(count >= last, "message count went back from %u to %u", last, count);
		last = count;
		passes++;
	}
	count = reader_pass(store, &rng);
	CHECK(count == WRITERS * MSGS, "final snapshot has %u messages", count);
	printf("reader: %u passes\n", passes);
	lmbox_store_close(&store);
	return 0;
}

static uint32_t reported[WRITERS][MSGS];

static int verify_main(void *arg)
{
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_NEVER, 6);
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	struct lmbox_folder_info info;
	static uint8_t seen[WRITERS][MSGS];
	uint32_t prev = 0, w, s, count = 0, uid;
	int ret;

	(void)arg;
	CHECK_LM(store, lmbox_folder_lookup(store, "INBOX", &info), "lookup");
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		CHECK(meta.uid > prev, "UID %u after %u", meta.uid, prev);
		prev = meta.uid;
		CHECK(parse_uidl(meta.uidl, &w, &s) == 0 && w < WRITERS && s < MSGS,
		      "foreign UIDL %s", meta.uidl);
		CHECK(!seen[w][s], "message %s present twice", meta.uidl);
		seen[w][s] = 1;
		CHECK(reported[w][s] == meta.uid, "%s has UID %u, its commit said %u",
		      meta.uidl, meta.uid, reported[w][s]);
		check_body(store, &meta, w, s);
		count++;
	}
	CHECK_LM(store, ret, "iter");
	lmbox_msg_iter_deinit(&iter);
	CHECK(count == WRITERS * MSGS, "%u messages, expected %u", count, WRITERS * MSGS);
	/* commit order within a writer is UID order: checked in writer_main;
	 * the UIDL index finds each */
	ret = lmbox_reader_uidl(reader, info.id, "w1-17", &uid);
	CHECK_LM(store, ret, "uidl lookup");
	CHECK(uid == reported[1][17], "UIDL lookup gave %u", uid);
	lmbox_reader_end(&reader);
	ret = fault_check(store, LMBOX_CHECK_BODIES, 1);
	CHECK(ret == 0, "lmbox_check: %d", ret);
	lmbox_store_close(&store);
	return 0;
}

static void phase_appenders_readers(uint64_t seed)
{
	int rec_pipe[2], done_pipe[2], status;
	pid_t writers[WRITERS], readers[READERS];
	unsigned int i, got = 0;
	char buf[128];
	struct rec r;
	double t0 = fault_now();

	CHECK(pipe(rec_pipe) == 0 && pipe(done_pipe) == 0, "pipe");
	for (i = 0; i < READERS; i++) {
		if ((readers[i] = fault_fork()) == 0) {
			close(rec_pipe[0]);
			close(rec_pipe[1]);
			close(done_pipe[1]);
			_exit(reader_main(done_pipe[0], seed + i));
		}
	}
	for (i = 0; i < WRITERS; i++) {
		if ((writers[i] = fault_fork()) == 0) {
			close(rec_pipe[0]);
			close(done_pipe[0]);
			close(done_pipe[1]);
			_exit(writer_main(i, rec_pipe[1]));
		}
	}
	close(rec_pipe[1]);
	close(done_pipe[0]);
	while (fault_read_all(rec_pipe[0], &r, sizeof(r)) > 0) {
		CHECK(r.writer < WRITERS && r.seq < MSGS, "bad record");
		reported[r.writer][r.seq] = r.uid;
		got++;
	}
	close(rec_pipe[0]);
	for (i = 0; i < WRITERS; i++) {
		status = fault_wait(writers[i]);
		CHECK(fault_exited(status, 0), "writer %u: %s", i,
		      fault_status_str(status, buf, sizeof(buf)));
	}
	CHECK(got == WRITERS * MSGS, "%u commits reported", got);
	close(done_pipe[1]);
	for (i = 0; i < READERS; i++) {
		status = fault_wait(readers[i]);
		CHECK(fault_exited(status, 0), "reader %u: %s", i,
		      fault_status_str(status, buf, sizeof(buf)));
	}
	fault_run_child("verify", verify_main, NULL);
	printf("appenders+readers: %u messages by %d writers, %d readers: ok (%.1f s)\n",
	       got, WRITERS, READERS, fault_now() - t0);
}

/* A process that must finish while a writer holds the lock.  SIGALRM
 * turns "blocked" into a failure instead of a hang. */
static int blocked_reader_main(void *arg)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	const char *errmsg;
	uint32_t n;
	struct fault_rng rng = { 99 };

	(void)arg;
	alarm(10);
	lmbox_store_opts_init(&opts);   /* read-write, as a pop3 login opens it */
	CHECK_LM(NULL, lmbox_store_open(dir, &opts, &store, &errmsg), "open under lock");
	n = reader_pass(store, &rng);
	CHECK(n >= WRITERS * MSGS, "reader saw %u messages", n);
	lmbox_store_close(&store);
	return 0;
}

static int failures;

/* Run blocked_reader_main in a child; count a failure instead of exiting,
 * so both lock phases report. */
static int run_reader(const char *what)
{
	char buf[128];
	pid_t pid = fault_fork();
	int status;

	if (pid == 0)
		_exit(blocked_reader_main(NULL));
	status = fault_wait(pid);
	if (fault_exited(status, 0))
		return 0;
	fprintf(stderr, "FAIL: %s: reader child %s%s\n", what,
		fault_status_str(status, buf, sizeof(buf)),
		WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ?
		" -- blocked by the writer for 10 s" : "");
	failures++;
	return -1;
}

static void phase_lmdb_lock_held(void)
{
	int to_parent[2], to_child[2], status;
	char path[4096], c, buf[128];
	pid_t holder;

	CHECK(pipe(to_parent) == 0 && pipe(to_child) == 0, "pipe");
	snprintf(path, sizeof(path), "%s/lmbox.mdb", dir);
	if ((holder = fault_fork()) == 0) {
		MDB_env *env;
		MDB_txn *txn;
		int ret;

		close(to_parent[0]);
		close(to_child[1]);
		alarm(60);
		CHECK(mdb_env_create(&env) == 0, "mdb_env_create");
		mdb_env_set_maxdbs(env, 64);
		ret = mdb_env_open(env, path, MDB_NOSUBDIR, 0600);
		CHECK(ret == 0, "mdb_env_open %s: %s", path, mdb_strerror(ret));
		ret = mdb_txn_begin(env, NULL, 0, &txn);
		CHECK(ret == 0, "mdb_txn_begin: %s", mdb_strerror(ret));
		fault_write_all(to_parent[1], "L", 1);
		/* hold the write lock until the parent says so */
		(void)fault_read_all(to_child[0], &c, 1);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		_exit(0);
	}
	close(to_parent[1]);
	close(to_child[0]);
	CHECK(fault_read_all(to_parent[0], &c, 1) == 1 && c == 'L', "holder died");
	if (run_reader("reader while another process holds the LMDB write lock") < 0) {
		fault_write_all(to_child[1], "R", 1);
		(void)fault_wait(holder);
		close(to_parent[0]);
		close(to_child[1]);
		return;
	}
	fault_write_all(to_child[1], "R", 1);
	status = fault_wait(holder);
	CHECK(fault_exited(status, 0), "lock holder: %s", fault_status_str(status, buf, sizeof(buf)));
	close(to_parent[0]);
	close(to_child[1]);
	printf("reader while another process holds the write lock: ok\n");
}

static void phase_big_commit(void)
{
	int to_parent[2], status, overlap;
	char c, buf[128];
	struct pollfd pfd;
	pid_t writer;

	CHECK(pipe(to_parent) == 0, "pipe");
	if ((writer = fault_fork()) == 0) {
		struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_ALWAYS, 1);
		uint32_t folder = fault_folder(store, "INBOX");
		struct lmbox_append_opts opts;
		struct lmbox_append *append;
		struct lmbox_txn *txn;
		unsigned char *data = malloc(1024 * 1024);
		unsigned int i;

		close(to_parent[0]);
		CHECK(data != NULL, "malloc");
		lmbox_append_opts_init(&opts);
		opts.uidl = "big";
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn");
		CHECK_LM(store, lmbox_append_begin(txn, folder, &opts, &append), "append");
		for (i = 0; i < BIG_MSG / (1024 * 1024); i++) {
			fault_fill_noise(i, data, 1024 * 1024);
			CHECK_LM(store, lmbox_append_write(append, data, 1024 * 1024), "write");
		}
		CHECK_LM(store, lmbox_append_finish(&append), "finish");
		fault_write_all(to_parent[1], "C", 1);
		CHECK_LM(store, lmbox_txn_commit(&txn, NULL), "commit");
		fault_write_all(to_parent[1], "D", 1);
		free(data);
		lmbox_store_close(&store);
		_exit(0);
	}
	close(to_parent[1]);
	CHECK(fault_read_all(to_parent[0], &c, 1) == 1 && c == 'C', "big writer died");
	if (run_reader("reader during a 64 MB commit") < 0) {
		(void)fault_wait(writer);
		close(to_parent[0]);
		return;
	}
	pfd.fd = to_parent[0];
	pfd.events = POLLIN;
	overlap = poll(&pfd, 1, 0) == 0;
	CHECK(fault_read_all(to_parent[0], &c, 1) == 1 && c == 'D', "big commit failed");
	status = fault_wait(writer);
	CHECK(fault_exited(status, 0), "big writer: %s", fault_status_str(status, buf, sizeof(buf)));
	close(to_parent[0]);
	printf("reader during a 64 MB commit: ok (%s)\n", overlap ?
	       "finished before the commit returned" :
	       "the commit was faster than the reader; no overlap shown");
}

int main(void)
{
	uint64_t seed = fault_seed("test-concurrent");

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = fault_mkdtemp("concurrent");
	fault_rmtree_at_exit(dir);
	phase_appenders_readers(seed);
	if (reader_under_lock)
		phase_lmdb_lock_held();
	else
		phase_big_commit();
	if (failures == 0)
		fault_rmtree(dir);
	free(dir);
	return failures == 0 ? 0 : 1;
}
