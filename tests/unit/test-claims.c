/*
 * test-claims: segment claims (lmbox-segment.c).  lmbox_txn_prepare()
 * writes bodies outside the write lock into a segment the transaction
 * holds the claim of; a writer that finds every open segment claimed
 * leaves its body to the commit, which writes it into a new segment.  Two
 * transactions of one process hold claims through fds of their own, so
 * one process shows what several would:
 * 1. a claimed segment is never written by another transaction: the
 *    second writer's body lands in a new segment, the first one's is
 *    recorded where it was prepared, whichever commits first;
 * 2. once there are two open segments, two writers use both and no third
 *    is created;
 * 3. a prepared but aborted body is overwritten by the next writer (it was
 *    beyond the committed tail: nothing refers to it);
 * 4. a segment that fills up under a claim is sealed by that writer's
 *    commit and the next body goes elsewhere;
 * 5. lmbox_compact() skips a segment another transaction holds claimed;
 * 6. a commit whose last sync is deferred (lmbox_txn_defer_sync) is
 *    visible at once, lmbox_store_sync() completes it, and a process
 *    killed between the two leaves its message committed and the store
 *    consistent (fsync on: MDB_NOMETASYNC).
 * Every body reads back intact and lmbox_check() finds nothing.
 */
#include <signal.h>
#include <sys/wait.h>

#include "test-common.h"

static uint32_t folder;

static void make_body(char *buf, size_t size, unsigned int n)
{
	size_t len = (size_t)snprintf(buf, size, "From: claims\nSubject: %u\n\n", n);
	uint32_t x = n * 2654435761u + 1;

	/* incompressible: segment sizes stay predictable */
	for (; len < size - 1; len++) {
		x = x * 1103515245u + 12345u;
		buf[len] = (char)(33 + (x >> 16) % 90);
	}
	buf[size - 1] = '\n';
}

static struct lmbox_txn *prepared(struct lmbox_store *store, const char *body, size_t size)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_append_begin(txn, folder, NULL, &append));
	CHECK_OK(store, lmbox_append_write(append, body, size));
	CHECK(lmbox_append_finish(&append) == 0);
	CHECK_OK(store, lmbox_txn_prepare(txn));
	return txn;
}

static uint32_t commit(struct lmbox_store *store, struct lmbox_txn **txn)
{
	struct lmbox_commit_result result;
	uint32_t uid = 0;

	CHECK_OK(store, lmbox_txn_commit(txn, &result));
	if (result.uid_count == 1)
		uid = result.uids[0];
	lmbox_commit_result_free(&result);
	CHECK(uid != 0);
	return uid;
}

static void meta_of(struct lmbox_store *store, uint32_t uid, struct lmbox_msg_meta *meta)
{
	struct lmbox_reader *reader;

	memset(meta, 0, sizeof(*meta));
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_msg(reader, folder, uid, meta));
	meta->uidl = NULL;
	meta->keywords = NULL;
	lmbox_reader_end(&reader);
}

static void check_body(struct lmbox_store *store, uint32_t uid, const char *want, size_t size)
{
	struct lmbox_msg_meta meta;
	unsigned char *got = NULL;
	size_t got_size = 0;

	meta_of(store, uid, &meta);
	CHECK_OK(store, lmbox_body_read_all(store, &meta, &got, &got_size));
	CHECK(got_size == size && got != NULL && memcmp(got, want, size) == 0);
	free(got);
}

static uint32_t segment_count(struct lmbox_store *store)
{
	struct lmbox_store_stat st;

	CHECK_OK(store, lmbox_store_stat(store, &st));
	return st.segment_count;
}

int main(void)
{
	struct lmbox_store_opts opts;
	struct lmbox_store *store;
	struct lmbox_txn *a, *b;
	struct lmbox_msg_meta ma, mb, m0;
	static char body[8][20000];
	uint32_t uid0, ua, ub;
	uint64_t freed;
	const char *err;

	test_init();
	lmbox_store_opts_init(&opts);
	opts.flags = LMBOX_OPEN_CREATE;
	opts.fsync = LMBOX_FSYNC_NEVER;
	opts.compress_level = 0;      /* stored = physical: sizes known */
	opts.segment_max = 64 * 1024; /* three 20 KB bodies per segment */
	if (lmbox_store_open(test_path("claims"), &opts, &store, &err) < 0) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	for (unsigned int i = 0; i < 8; i++)
		make_body(body[i], sizeof(body[i]), i);

	/* 1: the first segment exists; A claims it, B finds it claimed */
	uid0 = test_append(store, folder, body[0], sizeof(body[0]), NULL);
	meta_of(store, uid0, &m0);
	CHECK(segment_count(store) == 1);
	a = prepared(store, body[1], sizeof(body[1]));
	b = prepared(store, body[2], sizeof(body[2]));
	ub = commit(store, &b);
	ua = commit(store, &a);
	meta_of(store, ua, &ma);
	meta_of(store, ub, &mb);
	CHECK(ub < ua);               /* UIDs in commit order */
	CHECK(ma.seg_id == m0.seg_id);
	CHECK(ma.seg_offset == m0.seg_offset + 32 + sizeof(body[0]));
	CHECK(mb.seg_id != m0.seg_id);
	CHECK(segment_count(store) == 2);

	/* 2: two open segments, two writers: both used, none created */
	a = prepared(store, body[3], sizeof(body[3]));
	b = prepared(store, body[4], sizeof(body[4]));
	ua = commit(store, &a);
	ub = commit(store, &b);
	meta_of(store, ua, &ma);
	meta_of(store, ub, &mb);
	CHECK(ma.seg_id != mb.seg_id);
	CHECK(segment_count(store) == 2);
	check_body(store, ua, body[3], sizeof(body[3]));
	check_body(store, ub, body[4], sizeof(body[4]));

	/* 3: aborted after prepare: its bytes are overwritten by the next */
	a = prepared(store, body[5], sizeof(body[5]));
	lmbox_txn_abort(&a);
	b = prepared(store, body[6], sizeof(body[6]));
	ub = commit(store, &b);
	meta_of(store, ub, &mb);
	check_body(store, ub, body[6], sizeof(body[6]));

	/* 4: segments hold three bodies: keep appending one writer's bodies
	 * until segments fill; full ones are sealed, never overfilled */
	for (unsigned int i = 0; i < 6; i++) {
		a = prepared(store, body[i], sizeof(body[i]));
		ua = commit(store, &a);
		meta_of(store, ua, &ma);
		CHECK(ma.seg_offset + 32 + sizeof(body[i]) <= opts.segment_max);
		check_body(store, ua, body[i], sizeof(body[i]));
	}

	/* 5: compaction leaves a claimed segment alone (dead space in it) */
	CHECK(lmbox_txn_begin(store, &b) == 0);
	CHECK_OK(store, lmbox_txn_expunge(b, folder, uid0));
	CHECK_OK(store, lmbox_txn_commit(&b, NULL));
	a = prepared(store, body[7], sizeof(body[7]));
	CHECK_OK(store, lmbox_compact(store, &freed));
	ua = commit(store, &a);
	check_body(store, ua, body[7], sizeof(body[7]));
	CHECK_OK(store, lmbox_compact(store, &freed));

	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);

	/* 6 */
	opts.fsync = LMBOX_FSYNC_ALWAYS;
	if (lmbox_store_open(test_path("claims"), &opts, &store, &err) < 0) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	a = prepared(store, body[1], sizeof(body[1]));
	lmbox_txn_defer_sync(a);
	ua = commit(store, &a);
	check_body(store, ua, body[1], sizeof(body[1]));
	CHECK_OK(store, lmbox_store_sync(store));
	CHECK_OK(store, lmbox_store_sync(store));   /* nothing left: no-op */
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		struct lmbox_store *s2;

		if (lmbox_store_open(test_path("claims"), &opts, &s2, &err) < 0)
			_exit(3);
		a = prepared(s2, body[2], sizeof(body[2]));
		lmbox_txn_defer_sync(a);
		if (lmbox_txn_commit(&a, NULL) < 0)
			_exit(4);
		raise(SIGKILL);        /* committed, not synced */
		_exit(5);
	}
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	struct lmbox_folder_info info;
	uint32_t before = 0;
	CHECK_OK(store, lmbox_folder_get(store, folder, &info));
	before = info.next_uid;
	check_body(store, before - 1, body[2], sizeof(body[2]));
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	return test_exit();
}
