/*
 * test-kill9.c: kill -9 of a writer at random points.
 *
 * Each round forks a child that, in a loop, appends (1-3 messages per
 * commit, some large enough to spill), expunges, moves messages between
 * INBOX and Archive, and now and then compacts, reporting every commit that
 * returned through a pipe, and a second child that only appends (its
 * bodies written and synced outside the write lock by lmbox_txn_prepare,
 * into a segment it holds the claim of while the first child holds
 * another; in every fifth round it kills itself right after its first
 * prepare).  The parent kills both with SIGKILL after a random
 * number of reports plus a random few microseconds, drains what was
 * reported before the kill, and a fresh process checks the store:
 * lmbox_check() finds 0 problems; every reported append is there with its
 * UID and byte-for-byte body; every reported expunge is gone; a message
 * whose move was in flight is in exactly one of the two folders; every
 * message present (reported or not) is intact and present once -- nothing
 * is half-done.
 *
 * Every other round the writer opens the store as the plugin does
 * (LMBOX_OPEN_DEFER_RECLAIM) with every expunge committed as pending
 * (LMBOX_TEST_PENDING_MIN=1), and now and then runs lmbox_store_reclaim():
 * kills land in pending commits, in the purges that the next write or the
 * reclaim runs, and between them; readers must never see a pending
 * message, and the verify (which never writes) sees leftovers as well.
 */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "fault-util.h"

#define ROUNDS 80
#define MAX_MSGS 100000
/* keys per round: the writer's, then the appender's */
#define ROUND_KEYS 1000
#define NFOLDERS 2

static const char *const folder_names[NFOLDERS] = { "INBOX", "Archive" };

enum state {
	ABSENT = 0,     /* never reported: may exist (killed after commit) */
	ALIVE,          /* in model.folder with model.uid */
	MAYBE_DEAD,     /* expunge in flight */
	DEAD,           /* expunge committed */
	MAYBE_MOVED,    /* move in flight: at (folder, uid) or in the other folder */
};

struct entry {
	uint32_t uid;
	uint8_t state, folder;
};

struct rec {
	char type;      /* 'A' appended, 'd'/'D' expunge begun/committed, 'm'/'M'
	                   move begun/committed, 'C' compacted */
	uint8_t folder;
	char pad[2];
	uint32_t key, uid;
};

static char *dir;
static struct entry model[MAX_MSGS];
static uint32_t next_key = 1;
static unsigned int round_no;
static unsigned int n_appended, n_deleted, n_moved, n_compacted;

static size_t key_size(uint32_t key)
{
	uint32_t h = key * 2654435761u;

	if (h % 20 == 0)
		return 200000 + h % 800000;   /* spills */
	return 500 + h % 20000;
}

static void check_msg(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
		      uint32_t key)
{
	unsigned char *want, *got;
	size_t want_len, got_len;
	int ret;

	want = fault_gen_mail(key, key_size(key), &want_len);
	ret = lmbox_body_read_all(store, meta, &got, &got_len);
	CHECK_LM(store, ret, "body read");
	CHECK(got_len == want_len && memcmp(got, want, want_len) == 0,
	      "round %u: body of key %u (UID %u) differs (%zu vs %zu bytes)",
	      round_no, key, meta->uid, got_len, want_len);
	CHECK(meta->phys_size == want_len, "round %u: key %u psize %llu != %zu",
	      round_no, key, (unsigned long long)meta->phys_size, want_len);
	free(want);
	free(got);
}

/* Apply a record to the model (the writer's copy and the parent's). */
static void apply_rec(const struct rec *r)
{
	struct entry *e = &model[r->key];

	switch (r->type) {
	case 'A':
		e->uid = r->uid;
		e->folder = r->folder;
		e->state = ALIVE;
		n_appended++;
		break;
	case 'd':
		e->state = MAYBE_DEAD;
		break;
	case 'D':
		e->state = DEAD;
		n_deleted++;
		break;
	case 'm':
		e->state = MAYBE_MOVED;
		break;
	case 'M':
		e->uid = r->uid;
		e->folder = r->folder;
		e->state = ALIVE;
		n_moved++;
		break;
	case 'C':
		n_compacted++;
		break;
	default:
		FAIL("bad record type %d", r->type);
	}
	if (r->key >= next_key)
		next_key = r->key + 1;
}

static void send_rec(int fd, char type, uint32_t key, uint32_t uid, uint8_t folder)
{
	struct rec r;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.key = key;
	r.uid = uid;
	r.folder = folder;
	apply_rec(&r);
	fault_write_all(fd, &r, sizeof(r));
}

/* Up to max random ALIVE keys below limit into keys[]. */
static unsigned int pick_alive(struct fault_rng *rng, uint32_t limit, uint32_t *keys,
			       unsigned int max)
{
	unsigned int i, n = 0, j;
	uint32_t k;

	for (i = 0; i < max * 2 && n < max; i++) {
		k = 1 + (uint32_t)fault_rng_below(rng, limit - 1);
		if (model[k].state != ALIVE)
			continue;
		for (j = 0; j < n && keys[j] != k; j++)
			;
		if (j == n)
			keys[n++] = k;
	}
	return n;
}

static struct lmbox_store *writer_open(bool pending)
{
	struct lmbox_store_opts opts;

	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE | (pending ? LMBOX_OPEN_DEFER_RECLAIM : 0);
	opts.fsync = round_no % 4 == 0 ? LMBOX_FSYNC_ALWAYS : LMBOX_FSYNC_NEVER;
	opts.compress_level = 6;
	if (pending)
		setenv("LMBOX_TEST_PENDING_MIN", "1", 1);
	return fault_open_opts(dir, &opts);
}

static void writer_main(int fd, uint64_t seed)
{
	bool pending = round_no % 2 == 1;
	struct lmbox_store *store = writer_open(pending);
	uint32_t folders[NFOLDERS], keys[5], key, limit;
	struct fault_rng rng = { seed };
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	unsigned int i, n, iter, action;
	unsigned char *data;
	uint8_t f;
	char uidl[32];
	size_t len;

	for (i = 0; i < NFOLDERS; i++)
		folders[i] = fault_folder(store, folder_names[i]);
	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	/* The key space was handed over by the parent: next_key onwards. */
	key = next_key;
	limit = next_key + ROUND_KEYS / 2;
	for (iter = 0; iter < 5000 && key + 3 < limit; iter++) {
		action = (unsigned int)fault_rng_below(&rng, 40);
		if (action == 1 && pending) {
			/* the plugin's store close: purge, punch, compact */
			CHECK_LM(store, lmbox_store_reclaim(store), "reclaim");
			continue;
		}
		if (action == 0) {
			/* moves live bodies: a kill may land mid-move */
			uint64_t freed;

			CHECK_LM(store, lmbox_compact(store, &freed), "compact");
			send_rec(fd, 'C', 0, 0, 0);
			continue;
		}
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn begin");
		if (action < 26) {
			n = 1 + (unsigned int)fault_rng_below(&rng, 3);
			for (i = 0; i < n; i++) {
				keys[i] = key++;
				snprintf(uidl, sizeof(uidl), "k%08x", keys[i]);
				data = fault_gen_mail(keys[i], key_size(keys[i]), &len);
				CHECK_LM(store, lmbox_append_begin(txn, folders[0], &opts, &append),
					 "append begin");
				CHECK_LM(store, lmbox_append_write(append, data, len / 2), "write");
				CHECK_LM(store, lmbox_append_write(append, data + len / 2,
								   len - len / 2), "write");
				CHECK_LM(store, lmbox_append_finish(&append), "finish");
				free(data);
			}
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
			CHECK(res.uid_count == n, "uid_count %u", res.uid_count);
			for (i = 0; i < n; i++)
				send_rec(fd, 'A', keys[i], res.uids[i], 0);
			lmbox_commit_result_free(&res);
		} else if (action < 34) {
			n = pick_alive(&rng, key, keys, 5);
			for (i = 0; i < n; i++) {
				send_rec(fd, 'd', keys[i], model[keys[i]].uid, model[keys[i]].folder);
				CHECK_LM(store, lmbox_txn_expunge(txn, folders[model[keys[i]].folder],
								  model[keys[i]].uid), "expunge");
			}
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit expunge");
			lmbox_commit_result_free(&res);
			for (i = 0; i < n; i++)
				send_rec(fd, 'D', keys[i], 0, 0);
		} else {
			/* a MOVE is one transaction: never in both, never in none */
			n = pick_alive(&rng, key, keys, 3);
			for (i = 0; i < n; i++) {
				f = model[keys[i]].folder;
				send_rec(fd, 'm', keys[i], model[keys[i]].uid, f);
				CHECK_LM(store, lmbox_txn_move(txn, folders[f], model[keys[i]].uid,
							       folders[1 - f]), "move");
			}
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit move");
			CHECK(res.uid_count == n, "move uid_count %u of %u", res.uid_count, n);
			for (i = 0; i < n; i++) {
				CHECK(res.uids[i] != 0, "moved message vanished");
				send_rec(fd, 'M', keys[i], res.uids[i], (uint8_t)(1 - model[keys[i]].folder));
			}
			lmbox_commit_result_free(&res);
		}
	}
	lmbox_store_close(&store);
}

/* Appends only, 1-2 messages per commit, keys from key upwards. */
static void appender_main(int fd, uint32_t key, uint32_t limit)
{
	struct lmbox_store *store = fault_open(dir, round_no % 4 == 0 ?
					       LMBOX_FSYNC_ALWAYS : LMBOX_FSYNC_NEVER, 6);
	uint32_t inbox = fault_folder(store, folder_names[0]), keys[2];
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	unsigned int i, n;
	unsigned char *data;
	char uidl[32];
	size_t len;

	if (round_no % 5 == 2)
		setenv("LMBOX_TEST_KILL_AFTER_PREPARE", "1", 1);
	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	while (key + 2 < limit) {
		n = 1 + key % 2;
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn begin");
		for (i = 0; i < n; i++) {
			keys[i] = key++;
			snprintf(uidl, sizeof(uidl), "k%08x", keys[i]);
			data = fault_gen_mail(keys[i], key_size(keys[i]), &len);
			CHECK_LM(store, lmbox_append_begin(txn, inbox, &opts, &append),
				 "append begin");
			CHECK_LM(store, lmbox_append_write(append, data, len), "write");
			CHECK_LM(store, lmbox_append_finish(&append), "finish");
			free(data);
		}
		CHECK_LM(store, lmbox_txn_prepare(txn), "prepare");
		CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
		CHECK(res.uid_count == n, "uid_count %u", res.uid_count);
		for (i = 0; i < n; i++)
			send_rec(fd, 'A', keys[i], res.uids[i], 0);
		lmbox_commit_result_free(&res);
	}
	lmbox_store_close(&store);
}

static int verify_main(void *arg)
{
	int bodies = *(int *)arg;
	struct lmbox_store *store = fault_open(dir, LMBOX_FSYNC_NEVER, 6);
	struct lmbox_folder_info info;
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	static uint8_t seen[MAX_MSGS];
	uint32_t key, count, prev;
	const struct entry *e;
	uint8_t f;
	int ret;

	ret = fault_check(store, bodies ? LMBOX_CHECK_BODIES : 0, 1);
	CHECK(ret == 0, "round %u: lmbox_check found %d problems (%s)", round_no, ret,
	      ret < 0 ? lmbox_store_errmsg(store) : "see above");
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	for (f = 0; f < NFOLDERS; f++) {
		ret = lmbox_reader_folder_by_name(reader, folder_names[f], &info);
		if (ret == LMBOX_ERR_NOTFOUND)
			continue;       /* killed before it was created */
		CHECK_LM(store, ret, "folder");
		CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
		count = prev = 0;
		while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
			CHECK(meta.uid > prev, "UID %u after %u", meta.uid, prev);
			prev = meta.uid;
			CHECK(sscanf(meta.uidl, "k%x", &key) == 1 && key > 0 && key < MAX_MSGS,
			      "foreign UIDL %s", meta.uidl);
			CHECK(!seen[key], "round %u: key %u present twice (a move half-done?)",
			      round_no, key);
			seen[key] = 1;
			e = &model[key];
			CHECK(e->state != DEAD, "round %u: expunged key %u (UID %u) is back",
			      round_no, key, meta.uid);
			if (e->state == ALIVE || (e->state == MAYBE_MOVED && f == e->folder)) {
				CHECK(e->folder == f && e->uid == meta.uid,
				      "round %u: key %u in %s UID %u, commit said %s UID %u",
				      round_no, key, folder_names[f], meta.uid,
				      folder_names[e->folder], e->uid);
			}
			/* Present messages are whole, reported or not. */
			check_msg(store, &meta, key);
			count++;
		}
		CHECK_LM(store, ret, "iter");
		lmbox_msg_iter_deinit(&iter);
		CHECK(count == info.count, "round %u: %s has %u messages, counter %u",
		      round_no, folder_names[f], count, info.count);
	}
	lmbox_reader_end(&reader);
	for (key = 1; key < MAX_MSGS; key++) {
		CHECK((model[key].state != ALIVE && model[key].state != MAYBE_MOVED) ||
		      seen[key], "round %u: committed key %u (%s UID %u%s) is lost",
		      round_no, key, folder_names[model[key].folder], model[key].uid,
		      model[key].state == MAYBE_MOVED ? ", being moved" : "");
	}
	lmbox_store_close(&store);
	return 0;
}

int main(void)
{
	uint64_t seed = fault_seed("test-kill9");
	struct fault_rng rng = { seed };
	unsigned int wait_for, got, kills = 0;
	int fds[2], status, bodies;
	double t0 = fault_now(), spin_until;
	uint64_t spin_us;
	char buf[128];
	struct rec r;
	pid_t pid, apid;
	uint32_t round_base;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = fault_mkdtemp("kill9");
	fault_rmtree_at_exit(dir);
	for (round_no = 0; round_no < ROUNDS && next_key + ROUND_KEYS < MAX_MSGS; round_no++) {
		CHECK(pipe(fds) == 0, "pipe");
		wait_for = (unsigned int)fault_rng_below(&rng, 40);
		round_base = next_key;
		pid = fault_fork();
		if (pid == 0) {
			close(fds[0]);
			writer_main(fds[1], fault_rng_next(&rng));
			_exit(0);
		}
		apid = fault_fork();
		if (apid == 0) {
			close(fds[0]);
			appender_main(fds[1], round_base + ROUND_KEYS / 2, round_base + ROUND_KEYS);
			_exit(0);
		}
		close(fds[1]);
		for (got = 0; got < wait_for && fault_read_all(fds[0], &r, sizeof(r)) > 0; got++)
			apply_rec(&r);
		/* a few more microseconds of progress: lands anywhere in a commit */
		spin_us = fault_rng_below(&rng, 3000);
		spin_until = fault_now() + (double)spin_us / 1e6;
		while (fault_now() < spin_until)
			;
		if (kill(pid, SIGKILL) == 0)
			kills++;
		if (kill(apid, SIGKILL) == 0)
			kills++;
		/* what was reported before the kill is committed */
		while (fault_read_all(fds[0], &r, sizeof(r)) > 0)
			apply_rec(&r);
		close(fds[0]);
		status = fault_wait(pid);
		CHECK(WIFSIGNALED(status) || fault_exited(status, 0), "round %u: writer %s",
		      round_no, fault_status_str(status, buf, sizeof(buf)));
		status = fault_wait(apid);
		CHECK(WIFSIGNALED(status) || fault_exited(status, 0), "round %u: appender %s",
		      round_no, fault_status_str(status, buf, sizeof(buf)));
		/* keys the killed children may have used but not reported */
		next_key = round_base + ROUND_KEYS;
		bodies = round_no % 10 == 9;
		fault_run_child("verify after kill -9", verify_main, &bodies);
	}
	bodies = 1;
	fault_run_child("final verify", verify_main, &bodies);
	printf("kill -9: %u rounds, %u kills; %u appends, %u expunges, %u moves and %u "
	       "compactions reported; all intact (%.1f s)\n", round_no, kills, n_appended,
	       n_deleted, n_moved, n_compacted, fault_now() - t0);
	fault_rmtree(dir);
	free(dir);
	return 0;
}
