/*
 * test-kill9.c: kill -9 of a writer at random points.
 *
 * Each round forks a child that appends (1-3 messages per commit, some
 * large enough to spill), expunges and now and then compacts in a loop, reporting every commit
 * that returned through a pipe.  The parent kills it with SIGKILL after a
 * random number of reports plus a random few microseconds, drains what was
 * reported before the kill, and a fresh process then checks the store:
 * lmbox_check() finds 0 problems, every reported append is there with its
 * UID and byte-for-byte body, every reported expunge is gone, and every
 * message present (reported or not) is intact -- nothing is half-done.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "fault-util.h"

#define ROUNDS 80
#define MAX_MSGS 20000

enum state { ABSENT = 0, ALIVE, MAYBE_DEAD, DEAD };

struct entry {
	uint32_t uid;
	uint8_t state;
};

struct rec {
	char type;              /* 'A' appended, 'd' about to expunge, 'D' expunged,
	                           'C' compacted */
	char pad[3];
	uint32_t key, uid;
};

static char *dir;
static struct entry model[MAX_MSGS];
static uint32_t next_key = 1;
static unsigned int round_no;

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

static void send_rec(int fd, char type, uint32_t key, uint32_t uid)
{
	struct rec r;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.key = key;
	r.uid = uid;
	fault_write_all(fd, &r, sizeof(r));
}

static void writer_main(int fd, uint64_t seed)
{
	struct lmbox_store *store = fault_open(dir, round_no % 4 == 0 ?
					       LMBOX_FSYNC_ALWAYS : LMBOX_FSYNC_NEVER, 6);
	uint32_t folder = fault_folder(store, "INBOX");
	struct fault_rng rng = { seed };
	struct lmbox_append_opts opts;
	struct lmbox_commit_result res;
	struct lmbox_append *append;
	struct lmbox_txn *txn;
	uint32_t keys[3], dels[5], key, k;
	unsigned int i, n, iter;
	unsigned char *data;
	char uidl[32];
	size_t len;

	lmbox_append_opts_init(&opts);
	opts.uidl = uidl;
	/* The key space was handed over by the parent: next_key onwards. */
	key = next_key;
	for (iter = 0; iter < 5000 && key + 3 < MAX_MSGS; iter++) {
		if (fault_rng_below(&rng, 40) == 0) {
			/* moves live bodies: a kill may land mid-move */
			uint64_t freed;

			CHECK_LM(store, lmbox_compact(store, &freed), "compact");
			send_rec(fd, 'C', 0, 0);
			continue;
		}
		CHECK_LM(store, lmbox_txn_begin(store, &txn), "txn begin");
		if (fault_rng_below(&rng, 10) < 7) {
			n = 1 + (unsigned int)fault_rng_below(&rng, 3);
			for (i = 0; i < n; i++) {
				keys[i] = key++;
				snprintf(uidl, sizeof(uidl), "k%08x", keys[i]);
				data = fault_gen_mail(keys[i], key_size(keys[i]), &len);
				CHECK_LM(store, lmbox_append_begin(txn, folder, &opts, &append),
					 "append begin");
				CHECK_LM(store, lmbox_append_write(append, data, len / 2), "write");
				CHECK_LM(store, lmbox_append_write(append, data + len / 2,
								   len - len / 2), "write");
				CHECK_LM(store, lmbox_append_finish(&append), "finish");
				free(data);
			}
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit");
			CHECK(res.uid_count == n, "uid_count %u", res.uid_count);
			for (i = 0; i < n; i++) {
				model[keys[i]].uid = res.uids[i];
				model[keys[i]].state = ALIVE;
				send_rec(fd, 'A', keys[i], res.uids[i]);
			}
			lmbox_commit_result_free(&res);
		} else {
			n = 0;
			for (i = 0; i < 5 && n < 5; i++) {
				k = 1 + (uint32_t)fault_rng_below(&rng, key - 1);
				if (model[k].state != ALIVE)
					continue;
				model[k].state = MAYBE_DEAD;
				dels[n++] = k;
				send_rec(fd, 'd', k, model[k].uid);
				CHECK_LM(store, lmbox_txn_expunge(txn, folder, model[k].uid),
					 "expunge");
			}
			CHECK_LM(store, lmbox_txn_commit(&txn, &res), "commit expunge");
			lmbox_commit_result_free(&res);
			for (i = 0; i < n; i++) {
				model[dels[i]].state = DEAD;
				send_rec(fd, 'D', dels[i], model[dels[i]].uid);
			}
		}
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
	uint32_t key, count = 0, prev = 0;
	int ret;

	ret = fault_check(store, bodies ? LMBOX_CHECK_BODIES : 0, 1);
	CHECK(ret == 0, "round %u: lmbox_check found %d problems (%s)", round_no, ret,
	      ret < 0 ? lmbox_store_errmsg(store) : "see above");
	ret = lmbox_folder_lookup(store, "INBOX", &info);
	if (ret == LMBOX_ERR_NOTFOUND) {
		/* killed before the folder was created */
		for (key = 1; key < MAX_MSGS; key++)
			CHECK(model[key].state != ALIVE, "round %u: no INBOX", round_no);
		lmbox_store_close(&store);
		return 0;
	}
	CHECK_LM(store, ret, "INBOX");
	CHECK_LM(store, lmbox_reader_begin(store, &reader), "reader");
	CHECK_LM(store, lmbox_msg_iter_init(reader, info.id, 1, &iter), "iter");
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		CHECK(meta.uid > prev, "UID %u after %u", meta.uid, prev);
		prev = meta.uid;
		CHECK(sscanf(meta.uidl, "k%x", &key) == 1 && key > 0 && key < MAX_MSGS,
		      "foreign UIDL %s", meta.uidl);
		CHECK(!seen[key], "round %u: key %u twice", round_no, key);
		seen[key] = 1;
		CHECK(model[key].state != DEAD, "round %u: expunged key %u (UID %u) is back",
		      round_no, key, meta.uid);
		if (model[key].state != ABSENT)
			CHECK(model[key].uid == meta.uid, "round %u: key %u UID %u, commit said %u",
			      round_no, key, meta.uid, model[key].uid);
		/* Present messages are whole, reported or not. */
		check_msg(store, &meta, key);
		count++;
	}
	CHECK_LM(store, ret, "iter");
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	CHECK(count == info.count, "round %u: %u messages, counter %u", round_no,
	      count, info.count);
	for (key = 1; key < MAX_MSGS; key++) {
		CHECK(model[key].state != ALIVE || seen[key],
		      "round %u: committed key %u (UID %u) is lost", round_no, key,
		      model[key].uid);
	}
	lmbox_store_close(&store);
	return 0;
}

int main(void)
{
	uint64_t seed = fault_seed("test-kill9");
	struct fault_rng rng = { seed };
	unsigned int wait_for, got, kills = 0, appended = 0, deleted = 0, compactions = 0;
	int fds[2], status, bodies;
	double t0 = fault_now(), spin_until;
	uint64_t spin_us;
	char buf[128];
	struct rec r;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = fault_mkdtemp("kill9");
	fault_rmtree_at_exit(dir);
	for (round_no = 0; round_no < ROUNDS && next_key + 200 < MAX_MSGS; round_no++) {
		CHECK(pipe(fds) == 0, "pipe");
		wait_for = (unsigned int)fault_rng_below(&rng, 40);
		pid = fault_fork();
		if (pid == 0) {
			close(fds[0]);
			writer_main(fds[1], fault_rng_next(&rng));
			_exit(0);
		}
		close(fds[1]);
		got = 0;
		while (got < wait_for && fault_read_all(fds[0], &r, sizeof(r)) > 0) {
			got++;
			if (r.type == 'A') {
				model[r.key].uid = r.uid;
				model[r.key].state = ALIVE;
				if (r.key >= next_key)
					next_key = r.key + 1;
				appended++;
			} else if (r.type == 'd') {
				model[r.key].state = MAYBE_DEAD;
			} else if (r.type == 'D') {
				model[r.key].state = DEAD;
				deleted++;
			} else {
				compactions++;
			}
		}
		/* a few more microseconds of progress: lands anywhere in a commit */
		spin_us = fault_rng_below(&rng, 3000);
		spin_until = fault_now() + (double)spin_us / 1e6;
		while (fault_now() < spin_until)
			;
		if (kill(pid, SIGKILL) == 0)
			kills++;
		/* what was reported before the kill is committed */
		while (fault_read_all(fds[0], &r, sizeof(r)) > 0) {
			if (r.type == 'A') {
				model[r.key].uid = r.uid;
				model[r.key].state = ALIVE;
				appended++;
			} else if (r.type == 'd') {
				model[r.key].state = MAYBE_DEAD;
			} else if (r.type == 'D') {
				model[r.key].state = DEAD;
				deleted++;
			} else {
				compactions++;
			}
			if (r.key >= next_key)
				next_key = r.key + 1;
		}
		close(fds[0]);
		status = fault_wait(pid);
		CHECK(WIFSIGNALED(status) || fault_exited(status, 0), "round %u: writer %s",
		      round_no, fault_status_str(status, buf, sizeof(buf)));
		/* keys the killed child may have used but not reported */
		next_key += 3;
		bodies = round_no % 10 == 9;
		fault_run_child("verify after kill -9", verify_main, &bodies);
	}
	bodies = 1;
	fault_run_child("final verify", verify_main, &bodies);
	printf("kill -9: %u rounds, %u kills, %u appends, %u expunges and %u compactions "
	       "reported, all intact (%.1f s)\n", round_no, kills, appended, deleted,
	       compactions, fault_now() - t0);
	fault_rmtree(dir);
	free(dir);
	return 0;
}
