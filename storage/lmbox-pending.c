/*
 * lmbox-pending.c: expunges committed cheaply and applied later.
 *
 * Deleting thousands of messages at random (a POP3 QUIT after DELE of 10%
 * of a big mailbox) dirties nearly every leaf of "msgs", "uidls" and
 * "blobs", and the commit writes and syncs them all before the client
 * hears "+OK".  Instead such a commit only adjusts the folder counters and
 * puts the messages' keys into "pending" in key order (a few new pages);
 * every reader treats a pending message as gone.  The records themselves
 * are deleted by the next write transaction of any process (it calls
 * lmbox_pending_purge() first) or by lmbox_store_reclaim(), which the
 * plugin runs after the client was answered.  While "pending" is not
 * empty the store's format is LMBOX_FORMAT_PENDING, so an older library
 * refuses the store rather than showing those messages again.
 * docs/design.md, "Pending expunges", has the crash argument.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

static uint64_t lmbox_pending_key64(uint32_t folder_id, uint32_t uid)
{
	return ((uint64_t)folder_id << 32) | uid;
}

bool lmbox_pending_wanted(struct lmbox_store *store, unsigned int expunges)
{
	const char *env_min = getenv("LMBOX_TEST_PENDING_MIN");
	unsigned int min = LMBOX_PENDING_MIN_EXPUNGES;

	if ((store->opts.flags & LMBOX_OPEN_DEFER_RECLAIM) == 0 || !store->env->has_pending)
		return false;
	if (env_min != NULL)
		min = (unsigned int)strtoul(env_min, NULL, 10);
	return expunges > 0 && expunges >= min;
}

bool lmbox_pending_nonempty(struct lmbox_store *store, MDB_txn *txn)
{
	MDB_stat st;

	if (!store->env->has_pending)
		return false;
	if (mdb_stat(txn, store->env->dbi_pending, &st) != 0)
		return true;
	return st.ms_entries > 0;
}

int lmbox_pending_get(struct lmbox_store *store, MDB_txn *txn, uint32_t folder_id,
		      uint32_t uid)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc;

	if (!store->env->has_pending)
		return 0;
	lmbox_msg_key_encode(key, folder_id, uid);
	rc = mdb_get(txn, store->env->dbi_pending, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: reading pending expunges",
					   store->mdb_path);
	}
	return 1;
}

int lmbox_pending_add(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder,
		      const struct lmbox_msg_meta *meta)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[8], val[LMBOX_PENDING_REC_SIZE];
	MDB_val k = { 8, key }, v = { sizeof(val), val };
	uint64_t key64 = lmbox_pending_key64(folder->id, meta->uid);
	uint32_t format;
	int rc, ret;

	if (ctx->pending_added == 0) {
		/* the first one: an older library must not open the store
		 * until the purge (which sets the format back) */
		ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_FORMAT, &format);
		if (ret < 0)
			return ret;
		if (format < LMBOX_FORMAT_PENDING &&
		    (ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_FORMAT,
					      LMBOX_FORMAT_PENDING)) < 0)
			return ret;
	}
	lmbox_msg_key_encode(key, folder->id, meta->uid);
	lmbox_pending_rec_encode(val);
	/* "pending" was emptied at the start of this transaction, so keys
	 * put in order append: full leaves, few pages */
	rc = mdb_put(ctx->txn, store->env->dbi_pending, &k, &v,
		     ctx->pending_added > 0 && key64 > ctx->pending_last ? MDB_APPEND :
		     MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST)
		return 0; /* expunged twice in this commit */
	if (rc != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: recording expunge of uid %u in folder %u",
					   store->dir, meta->uid, folder->id);
	}
	if (ctx->pending_added == 0 || key64 > ctx->pending_last)
		ctx->pending_last = key64;
	ctx->pending_added++;
	/* the counters and change_counter now, as an expunge does */
	folder->count = folder->count > 0 ? folder->count - 1 : 0;
	folder->vsize_total = folder->vsize_total >= meta->virt_size ?
		folder->vsize_total - meta->virt_size : 0;
	folder->psize_total = folder->psize_total >= meta->phys_size ?
		folder->psize_total - meta->phys_size : 0;
	ret = lmbox_wctx_touch_folder(ctx, folder->id);
	if (ret > 0)
		folder->change_counter++;
	return ret < 0 ? ret : 0;
}

int lmbox_pending_purge(struct lmbox_wctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_env *env = store->env;
	struct lmbox_msg_meta meta;
	uint64_t *keys = NULL;
	unsigned int count = 0, alloc = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t fid, uid, format;
	int rc, ret = 0;

	if (!env->has_pending || env->rdonly || !lmbox_pending_nonempty(store, ctx->txn))
		return 0;
	if ((rc = mdb_cursor_open(ctx->txn, env->dbi_pending, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor on pending expunges", store->dir);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		/* a malformed entry names no message: dropped below */
		if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &fid, &uid) < 0)
			continue;
		if (lmbox_grow_array(&keys, &alloc, count + 1, sizeof(*keys)) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			break;
		}
		keys[count++] = lmbox_pending_key64(fid, uid);
	}
	mdb_cursor_close(cur);
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = lmbox_set_mdb_error(store, rc, "%s: reading pending expunges", store->dir);
	if (ret < 0) {
		free(keys);
		return ret;
	}
	/* in key order: the deletions walk each tree once */
	for (unsigned int i = 0; i < count && ret == 0; i++) {
		fid = (uint32_t)(keys[i] >> 32);
		uid = (uint32_t)keys[i];
		ret = lmbox_msg_load(store, ctx->txn, fid, uid, &meta);
		if (ret == LMBOX_ERR_NOTFOUND) {
			ret = 0;
		} else if (ret == LMBOX_ERR_CORRUPT) {
			/* it was expunged: drop the record; its blob, if the
			 * index still names it, is left for lmbox_check */
			unsigned char key[8];
			MDB_val dk = { 8, key };

			lmbox_msg_key_encode(key, fid, uid);
			rc = mdb_del(ctx->txn, env->dbi_msgs, &dk, NULL);
			ret = rc == 0 || rc == MDB_NOTFOUND ? 0 :
				lmbox_set_mdb_error(store, rc, "%s: deleting uid %u in folder %u",
						    store->dir, uid, fid);
		} else if (ret == 0) {
			ret = lmbox_msg_unlink(ctx, &meta, false);
		}
	}
	free(keys);
	/* the segment records now, not at commit: what runs next in this
	 * transaction (a check's repair) reads them */
	if (ret < 0 || (ret = lmbox_wseg_flush(ctx)) < 0)
		return ret;
	/* tests/fault/test-pending: a crash in the middle of the purge */
	if (getenv("LMBOX_TEST_KILL_IN_PURGE") != NULL)
		(void)raise(SIGKILL);
	if ((rc = mdb_drop(ctx->txn, env->dbi_pending, 0)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: emptying pending expunges", store->dir);
	if ((ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_FORMAT, &format)) < 0)
		return ret;
	if (format != LMBOX_FORMAT_BASE)
		return lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_FORMAT, LMBOX_FORMAT_BASE);
	return 0;
}

static int lmbox_pending_purge_fn(struct lmbox_wctx *ctx, void *context)
{
	(void)ctx;
	(void)context;
	return 0; /* lmbox_write() purged before calling us */
}

int lmbox_pending_purge_now(struct lmbox_store *store)
{
	MDB_txn *txn;
	bool nonempty;
	int ret;

	if (!store->env->has_pending || store->env->rdonly)
		return 0;
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	nonempty = lmbox_pending_nonempty(store, txn);
	mdb_txn_abort(txn);
	if (!nonempty)
		return 0;
	return lmbox_write(store, lmbox_pending_purge_fn, NULL);
}

/* ------------------------------------------------------------------ scan */

static int lmbox_pending_scan_load(struct lmbox_store *store, struct lmbox_pending_scan *scan,
				   int rc, const MDB_val *k)
{
	uint32_t fid, uid;

	if (rc == MDB_NOTFOUND) {
		scan->next = UINT64_MAX;
		return 0;
	}
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: reading pending expunges", store->dir);
	if (lmbox_msg_key_decode(k->mv_data, k->mv_size, &fid, &uid) < 0) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: a key of the pending expunges is malformed", store->mdb_path);
	}
	scan->next = lmbox_pending_key64(fid, uid);
	return 0;
}

void lmbox_pending_scan_close(struct lmbox_pending_scan *scan)
{
	if (scan->cur != NULL)
		mdb_cursor_close(scan->cur);
	scan->cur = NULL;
	scan->next = UINT64_MAX;
}

int lmbox_pending_scan_seek(struct lmbox_store *store, MDB_txn *txn,
			    struct lmbox_pending_scan *scan, uint32_t folder_id, uint32_t uid)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc;

	lmbox_pending_scan_close(scan);
	/* the usual case, nothing pending: no cursor, no lookups */
	if (!lmbox_pending_nonempty(store, txn))
		return 0;
	if ((rc = mdb_cursor_open(txn, store->env->dbi_pending, &scan->cur)) != 0) {
		scan->cur = NULL;
		return lmbox_set_mdb_error(store, rc, "%s: cursor on pending expunges", store->dir);
	}
	lmbox_msg_key_encode(key, folder_id, uid);
	rc = mdb_cursor_get(scan->cur, &k, &v, MDB_SET_RANGE);
	return lmbox_pending_scan_load(store, scan, rc, &k);
}

int lmbox_pending_scan_has(struct lmbox_store *store, struct lmbox_pending_scan *scan,
			   uint32_t folder_id, uint32_t uid)
{
	uint64_t key64 = lmbox_pending_key64(folder_id, uid);
	MDB_val k, v;
	int ret;

	while (scan->next < key64) {
		ret = lmbox_pending_scan_load(store, scan,
			mdb_cursor_get(scan->cur, &k, &v, MDB_NEXT), &k);
		if (ret < 0)
			return ret;
	}
	return scan->next == key64;
}
