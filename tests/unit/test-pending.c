/*
 * test-pending.c: expunges committed as pending (storage/lmbox-pending.c).
 *
 * A commit of many expunges to a store opened with
 * LMBOX_OPEN_DEFER_RECLAIM only records them; every reader must treat
 * those messages as gone at once (lookup by UID and by UIDL, folder walks
 * from any UID, counters, check), the store is format 2 until the purge,
 * and the purge (lmbox_store_reclaim(), store close, or the next write of
 * any process) deletes the records and gives their space back.
 */
#include <stdbool.h>
#include <lmdb.h>
#include <sys/wait.h>

#include "lmbox-format.h"

#include "test-common.h"

#define NMSG 200

static uint32_t folder_id;

static void fill(struct lmbox_store *store, uint32_t fid, unsigned int n)
{
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	char body[200];

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (unsigned int i = 0; i < n; i++) {
		int len = snprintf(body, sizeof(body),
				   "Subject: message %u\r\n\r\nbody of message %u, some text\r\n",
				   i, i);

		CHECK_OK(store, lmbox_append_begin(txn, fid, NULL, &append));
		CHECK_OK(store, lmbox_append_write(append, body, (size_t)len));
		CHECK(lmbox_append_finish(&append) == (int)i);
	}
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
}

/* uid % 4 == 1 is expunged: 50 of 200 */
static bool expunged_uid(uint32_t uid)
{
	return uid % 4 == 1;
}

static unsigned int expunge_some(struct lmbox_store *store, uint32_t fid)
{
	struct lmbox_txn *txn;
	struct lmbox_commit_result result;
	unsigned int n;

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (uint32_t uid = 1; uid <= NMSG; uid++) {
		if (expunged_uid(uid))
			CHECK_OK(store, lmbox_txn_expunge(txn, fid, uid));
	}
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	n = result.expunged;
	lmbox_commit_result_free(&result);
	return n;
}

static uint32_t format_of(struct lmbox_store *store)
{
	struct lmbox_store_stat st;

	CHECK_OK(store, lmbox_store_stat(store, &st));
	return st.format_version;
}

static void report(void *context, const char *line)
{
	(void)context;
	fprintf(stderr, "check: %s\n", line);
}

/* Everything a reader can see agrees that the expunged ones are gone. */
static void verify_view(struct lmbox_store *store, uint32_t fid)
{
	struct lmbox_reader *reader;
	struct lmbox_folder_info info;
	struct lmbox_msg_meta meta;
	struct lmbox_msg_iter *iter;
	char uidl[64];
	uint32_t uid, expect;
	int ret;

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_folder(reader, fid, &info));
	CHECK(info.count == NMSG - NMSG / 4);

	for (uid = 1; uid <= NMSG; uid++) {
		ret = lmbox_reader_msg(reader, fid, uid, &meta);
		if (expunged_uid(uid)) {
			CHECK_ERR(store, ret, LMBOX_ERR_NOTFOUND);
		} else {
			CHECK_OK(store, ret);
		}
		snprintf(uidl, sizeof(uidl), "%08x%08x", uid, info.uidvalidity);
		ret = lmbox_reader_uidl(reader, fid, uidl, &expect);
		if (expunged_uid(uid)) {
			CHECK_ERR(store, ret, LMBOX_ERR_NOTFOUND);
		} else {
			CHECK_OK(store, ret);
			CHECK(expect == uid);
		}
	}
	/* walks from every start, including from an expunged UID */
	for (uint32_t from = 0; from <= NMSG + 1; from += 7) {
		CHECK_OK(store, lmbox_msg_iter_init(reader, fid, from, &iter));
		expect = from == 0 ? 1 : from;
		while ((ret = lmbox_msg_iter_next(iter, &meta)) == 1) {
			while (expunged_uid(expect))
				expect++;
			CHECK(meta.uid == expect);
			expect++;
		}
		CHECK_OK(store, ret);
		while (expect <= NMSG && expunged_uid(expect))
			expect++;
		CHECK(expect == NMSG + 1 || from > NMSG);
		lmbox_msg_iter_deinit(&iter);
	}
	lmbox_reader_end(&reader);
	CHECK(lmbox_check(store, 0, report, NULL) == 0);
}

/* The main path: pending commit, readers, purge at lmbox_store_reclaim. */
static void test_pending_basic(void)
{
	struct lmbox_store *store;
	struct lmbox_reader *old_reader;
	struct lmbox_folder_info info;
	struct lmbox_store_stat st_before, st_after;

	store = test_open("basic", LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder_id));
	fill(store, folder_id, NMSG);
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	CHECK_OK(store, lmbox_reader_begin(store, &old_reader));

	CHECK(expunge_some(store, folder_id) == NMSG / 4);
	CHECK(format_of(store) == LMBOX_FORMAT_PENDING);
	verify_view(store, folder_id);

	/* an older snapshot still has them; refreshed, it does not */
	CHECK_OK(store, lmbox_reader_folder(old_reader, folder_id, &info));
	CHECK(info.count == NMSG);
	CHECK_OK(store, lmbox_reader_refresh(old_reader));
	CHECK_OK(store, lmbox_reader_folder(old_reader, folder_id, &info));
	CHECK(info.count == NMSG - NMSG / 4);
	lmbox_reader_end(&old_reader);

	/* the blobs are still live until the purge */
	CHECK_OK(store, lmbox_store_stat(store, &st_before));
	CHECK_OK(store, lmbox_store_reclaim(store));
	CHECK_OK(store, lmbox_store_stat(store, &st_after));
	CHECK(st_after.format_version == LMBOX_FORMAT_BASE);
	CHECK(st_after.stored_bytes < st_before.stored_bytes);
	CHECK(st_after.message_count == st_before.message_count);
	verify_view(store, folder_id);
	lmbox_store_close(&store);
}

/* Fewer expunges than the threshold, or a store without deferred
 * reclaim: the immediate path, format stays 1. */
static void test_pending_small(void)
{
	struct lmbox_store *store;
	struct lmbox_txn *txn;
	uint32_t fid;

	store = test_open("small", LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &fid));
	fill(store, fid, 40);
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (uint32_t uid = 1; uid <= 10; uid++)
		CHECK_OK(store, lmbox_txn_expunge(txn, fid, uid));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	lmbox_store_close(&store);

	store = test_open("small", 0);
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (uint32_t uid = 11; uid <= 40; uid++)
		CHECK_OK(store, lmbox_txn_expunge(txn, fid, uid));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	CHECK(lmbox_check(store, 0, report, NULL) == 0);
	lmbox_store_close(&store);
}

/* Other operations on a message expunged earlier in the same commit see
 * it gone; a copy sharing the UIDL is found by UIDL instead. */
static void test_pending_same_txn(void)
{
	struct lmbox_store *store;
	struct lmbox_txn *txn;
	struct lmbox_commit_result result;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_folder_info info, ainfo;
	char uidl[64];
	uint32_t fid, archive, uid;
	int seq_move, seq_copy;

	store = test_open("same", LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &fid));
	CHECK_OK(store, lmbox_folder_create(store, "Archive", 0, NULL, &archive));
	fill(store, fid, NMSG);
	CHECK_OK(store, lmbox_folder_get(store, fid, &info));

	/* a copy of uid 3 in the same folder shares its UIDL */
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK(lmbox_txn_copy(txn, fid, 3, fid) == 0);
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.uid_count == 1 && result.uids[0] == NMSG + 1);
	lmbox_commit_result_free(&result);

	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	for (uid = 1; uid <= 100; uid++)
		CHECK_OK(store, lmbox_txn_expunge(txn, fid, uid));
	CHECK_OK(store, lmbox_txn_expunge(txn, fid, 5)); /* twice */
	CHECK_OK(store, lmbox_txn_update_flags(txn, fid, 7, LMBOX_MODIFY_ADD, LMBOX_FLAG_SEEN));
	seq_move = lmbox_txn_move(txn, fid, 8, archive);
	seq_copy = lmbox_txn_copy(txn, fid, 9, archive);
	CHECK(seq_move == 0 && seq_copy == 1);
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.expunged == 100);
	CHECK(result.uid_count == 2 && result.uids[0] == 0 && result.uids[1] == 0);
	lmbox_commit_result_free(&result);
	CHECK(format_of(store) == LMBOX_FORMAT_PENDING);

	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	CHECK_OK(store, lmbox_reader_folder(reader, fid, &info));
	CHECK(info.count == NMSG + 1 - 100);
	CHECK_OK(store, lmbox_reader_folder(reader, archive, &ainfo));
	CHECK(ainfo.count == 0);
	snprintf(uidl, sizeof(uidl), "%08x%08x", 3, info.uidvalidity);
	CHECK_OK(store, lmbox_reader_uidl(reader, fid, uidl, &uid));
	CHECK(uid == NMSG + 1);
	CHECK_ERR(store, lmbox_reader_msg(reader, fid, 7, &meta), LMBOX_ERR_NOTFOUND);
	lmbox_reader_end(&reader);
	CHECK(lmbox_check(store, 0, report, NULL) == 0);

	/* a later commit expunging a pending one again: purged first,
	 * then nothing left to expunge */
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_txn_expunge(txn, fid, 50));
	CHECK_OK(store, lmbox_txn_commit(&txn, &result));
	CHECK(result.expunged == 0);
	lmbox_commit_result_free(&result);
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	CHECK(lmbox_check(store, 0, report, NULL) == 0);
	lmbox_store_close(&store);
}

/* A process that died after the pending commit (never closed the store):
 * the next write of any process applies the expunges. */
static void test_pending_leftover(void)
{
	struct lmbox_store *store;
	struct lmbox_folder_info info;
	pid_t pid;
	int status;
	uint32_t fid;

	store = test_open("leftover", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &fid));
	fill(store, fid, NMSG);
	lmbox_store_close(&store);

	pid = fork();
	if (pid == 0) {
		store = test_open("leftover", LMBOX_OPEN_DEFER_RECLAIM);
		if (expunge_some(store, fid) != NMSG / 4 || test_failures != 0)
			_exit(1);
		_exit(0); /* no close: no purge */
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* read-only: filtered, nothing changed */
	store = test_open("leftover", LMBOX_OPEN_RDONLY);
	CHECK(format_of(store) == LMBOX_FORMAT_PENDING);
	verify_view(store, fid);
	lmbox_store_close(&store);

	store = test_open("leftover", 0);
	CHECK(format_of(store) == LMBOX_FORMAT_PENDING);
	verify_view(store, fid);
	/* any write purges: here a value */
	CHECK_OK(store, lmbox_store_set_u64(store, "test.x", 1));
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	CHECK_OK(store, lmbox_folder_get(store, fid, &info));
	CHECK(info.count == NMSG - NMSG / 4);
	verify_view(store, fid);
	lmbox_store_close(&store);
}

/* A store from before "pending": read-only opens work without it, a
 * read-write open creates it. */
static void test_pending_old_store(void)
{
	struct lmbox_store *store;
	char path[600];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint32_t fid;

	store = test_open("old", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &fid));
	fill(store, fid, 10);
	lmbox_store_close(&store);

	snprintf(path, sizeof(path), "%s/lmbox.mdb", test_path("old"));
	CHECK(mdb_env_create(&env) == 0);
	mdb_env_set_maxdbs(env, 16);
	CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, "pending", 0, &dbi) == 0);
	CHECK(mdb_drop(txn, dbi, 1) == 0);
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);

	store = test_open("old", LMBOX_OPEN_RDONLY);
	CHECK(lmbox_check(store, 0, report, NULL) == 0);
	lmbox_store_close(&store);

	store = test_open("old", LMBOX_OPEN_DEFER_RECLAIM);
	CHECK_OK(store, lmbox_folder_create(store, "Big", 0, NULL, &folder_id));
	fill(store, folder_id, NMSG);
	CHECK(expunge_some(store, folder_id) == NMSG / 4);
	CHECK(format_of(store) == LMBOX_FORMAT_PENDING);
	verify_view(store, folder_id);
	lmbox_store_close(&store);

	store = test_open("old", 0);
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	verify_view(store, folder_id);
	lmbox_store_close(&store);
}

/* Folder delete, repair and compaction with expunges pending. */
static void test_pending_maintenance(void)
{
	struct lmbox_store *store;
	uint64_t freed;
	uint32_t fid, other;

	store = test_open("maint", LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &fid));
	CHECK_OK(store, lmbox_folder_create(store, "Other", 0, NULL, &other));
	fill(store, fid, NMSG);
	fill(store, other, NMSG);
	CHECK(expunge_some(store, other) == NMSG / 4);
	CHECK_OK(store, lmbox_folder_delete(store, "Other"));
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	CHECK(lmbox_check(store, 0, report, NULL) == 0);

	CHECK(expunge_some(store, fid) == NMSG / 4);
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, report, NULL) == 0);
	CHECK(format_of(store) == LMBOX_FORMAT_BASE);
	verify_view(store, fid);
	lmbox_store_close(&store);

	store = test_open("maint", 0);
	CHECK_OK(store, lmbox_compact(store, &freed));
	verify_view(store, fid);
	lmbox_store_close(&store);
}

/* lmbox_reader_msg_guid(): the record's GUID in ascending, repeated and
 * descending order, the same as lmbox_reader_msg()'s; a pending expunge
 * still answers, a purged or unknown UID is NOTFOUND; after a refresh the
 * new snapshot answers; a record too short to hold a GUID is CORRUPT. */
static void test_pending_guid(void)
{
	struct lmbox_store *store;
	struct lmbox_reader *reader, *fresh;
	struct lmbox_msg_meta meta;
	uint8_t guid[LMBOX_GUID_SIZE], want[NMSG + 1][LMBOX_GUID_SIZE];
	uint32_t fid;

	store = test_open("guid", LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &fid));
	fill(store, fid, NMSG);
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	for (uint32_t uid = 1; uid <= NMSG; uid++) {
		CHECK_OK(store, lmbox_reader_msg(reader, fid, uid, &meta));
		memcpy(want[uid], meta.guid, LMBOX_GUID_SIZE);
	}
	CHECK(memcmp(want[1], want[2], LMBOX_GUID_SIZE) != 0);
	for (uint32_t uid = 1; uid <= NMSG; uid += 3) {
		CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, uid, guid));
		CHECK(memcmp(guid, want[uid], LMBOX_GUID_SIZE) == 0);
		CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, uid, guid));
		CHECK(memcmp(guid, want[uid], LMBOX_GUID_SIZE) == 0);
	}
	for (uint32_t uid = NMSG; uid >= 1 && uid <= NMSG; uid -= 7) {
		CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, uid, guid));
		CHECK(memcmp(guid, want[uid], LMBOX_GUID_SIZE) == 0);
	}
	CHECK_ERR(store, lmbox_reader_msg_guid(reader, fid, NMSG + 1, guid), LMBOX_ERR_NOTFOUND);
	CHECK_ERR(store, lmbox_reader_msg_guid(reader, fid + 1, 1, guid), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, 2, guid));

	/* pending: gone for lmbox_reader_msg, its GUID still there */
	CHECK(expunge_some(store, fid) == NMSG / 4);
	CHECK_OK(store, lmbox_reader_refresh(reader));
	CHECK_ERR(store, lmbox_reader_msg(reader, fid, 5, &meta), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, 5, guid));
	CHECK(memcmp(guid, want[5], LMBOX_GUID_SIZE) == 0);
	/* purged: the old snapshot still answers, a refreshed one does not */
	CHECK_OK(store, lmbox_store_reclaim(store));
	CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, 9, guid));
	CHECK(memcmp(guid, want[9], LMBOX_GUID_SIZE) == 0);
	CHECK_OK(store, lmbox_reader_begin(store, &fresh));
	CHECK_ERR(store, lmbox_reader_msg_guid(fresh, fid, 9, guid), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_msg_guid(fresh, fid, 10, guid));
	CHECK(memcmp(guid, want[10], LMBOX_GUID_SIZE) == 0);
	lmbox_reader_end(&fresh);
	CHECK_OK(store, lmbox_reader_refresh(reader));
	CHECK_ERR(store, lmbox_reader_msg_guid(reader, fid, 13, guid), LMBOX_ERR_NOTFOUND);
	CHECK_OK(store, lmbox_reader_msg_guid(reader, fid, 14, guid));
	CHECK(memcmp(guid, want[14], LMBOX_GUID_SIZE) == 0);
	lmbox_reader_end(&reader);
	lmbox_store_close(&store);

	/* the record decoder: too short or another version */
	unsigned char rec[LMBOX_MSG_REC_FIXED + 2];
	memset(rec, 0xab, sizeof(rec));
	rec[0] = LMBOX_MSG_REC_VERSION;
	CHECK(lmbox_msg_decode_guid(rec, sizeof(rec), guid) == 0);
	CHECK(guid[0] == 0xab && guid[LMBOX_GUID_SIZE - 1] == 0xab);
	CHECK(lmbox_msg_decode_guid(rec, LMBOX_MSG_REC_FIXED - 1, guid) == LMBOX_ERR_CORRUPT);
	rec[0] = LMBOX_MSG_REC_VERSION + 1;
	CHECK(lmbox_msg_decode_guid(rec, sizeof(rec), guid) == LMBOX_ERR_CORRUPT);
}

int main(void)
{
	test_init();
	unsetenv("LMBOX_TEST_PENDING_MIN");
	test_pending_basic();
	test_pending_small();
	test_pending_same_txn();
	test_pending_leftover();
	test_pending_old_store();
	test_pending_maintenance();
	test_pending_guid();
	return test_exit();
}
