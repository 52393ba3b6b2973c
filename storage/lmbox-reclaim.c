/*
 * lmbox-reclaim.c: giving back the space of dead blobs.  A commit that
 * kills blobs records them in the "reclaim" DB; after it, each dead range
 * is widened to its live neighbours (the "blobs" index), cut to whole
 * blocks and punched out, fully dead sealed segments are unlinked, and the
 * records forgotten.  A crash in between is redone at the next open:
 * punching a range twice is harmless because dead space is never reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "lmbox-private.h"

struct lmbox_punch {
	uint32_t seg_id;
	uint64_t start, end;
};

static int lmbox_reclaim_item_cmp(const void *a, const void *b)
{
	const struct lmbox_reclaim_item *ia = a, *ib = b;

	if (ia->seg_id != ib->seg_id)
		return ia->seg_id < ib->seg_id ? -1 : 1;
	if (ia->offset != ib->offset)
		return ia->offset < ib->offset ? -1 : 1;
	return 0;
}

static int lmbox_punch_cmp(const void *a, const void *b)
{
	const struct lmbox_punch *pa = a, *pb = b;

	if (pa->seg_id != pb->seg_id)
		return pa->seg_id < pb->seg_id ? -1 : 1;
	if (pa->start != pb->start)
		return pa->start < pb->start ? -1 : 1;
	return 0;
}

/* Widen a dead range to the live blobs around it (or the segment header,
 * or the committed tail of the snapshot), so that a block shared only by
 * dead blobs is freed when the last of them dies.  Safe outside the write
 * lock: below the tail nothing ever becomes live again. */
static void lmbox_reclaim_widen(struct lmbox_store *store, MDB_txn *txn, MDB_cursor *cur,
				const struct lmbox_reclaim_item *item, struct lmbox_punch *punch)
{
	struct lmbox_seg_rec rec;
	struct lmbox_blob_rec brec;
	unsigned char key[12];
	MDB_val k = { 12, key }, v;
	uint32_t seg_id;
	uint64_t offset, start = item->offset, end = item->offset + item->len;
	int rc;

	punch->seg_id = item->seg_id;
	punch->start = start;
	punch->end = end;
	lmbox_put_be32(key, item->seg_id);
	k.mv_size = 4;
	if (mdb_get(txn, store->env->dbi_segs, &k, &v) != 0 ||
	    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) < 0 || rec.tail < end)
		return;
	start = LMBOX_SEG_HDR_SIZE;
	end = rec.tail;
	lmbox_reclaim_key_encode(key, item->seg_id, item->offset);
	k.mv_data = key;
	k.mv_size = 12;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && lmbox_reclaim_key_decode(k.mv_data, k.mv_size, &seg_id, &offset) == 0 &&
	    seg_id == item->seg_id && offset < end)
		end = offset;
	rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
	if (rc == 0 && lmbox_reclaim_key_decode(k.mv_data, k.mv_size, &seg_id, &offset) == 0 &&
	    seg_id == item->seg_id && lmbox_blob_rec_decode(v.mv_data, v.mv_size, &brec) == 0)
		start = offset + brec.len;
	/* an index that disagrees with the dead range: trust only the range */
	if (start > item->offset || end < item->offset + item->len)
		return;
	punch->start = start;
	punch->end = end;
}

/* Punch/unlink what items describe.  Returns how many items are done;
 * they are moved to the front of items. */
static unsigned int lmbox_reclaim_do(struct lmbox_store *store,
				     struct lmbox_reclaim_item *items, unsigned int count)
{
	struct lmbox_punch *punches;
	unsigned int i, ok = 0, npunch = 0;
	bool failed_any = false;
	uint32_t fd_seg = 0, unlinked_seg = 0;
	char path[4096];
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	int fd = -1;

	/* Never punch for a commit that a power loss could still undo: the
	 * records may be another process's, committed (MDB_NOMETASYNC) but
	 * not synced yet. */
	if (lmbox_env_sync(store) < 0)
		return 0;
	qsort(items, count, sizeof(*items), lmbox_reclaim_item_cmp);
	if ((punches = malloc(sizeof(*punches) * count)) == NULL)
		return 0;
	if (lmbox_rtxn_begin(store, &txn) == 0 &&
	    mdb_cursor_open(txn, store->env->dbi_blobs, &cur) != 0)
		cur = NULL;

	/* unlinks first; punches of unlinked segments are moot */
	for (i = 0; i < count; i++) {
		if (items[i].kind != LMBOX_RECLAIM_UNLINK)
			continue;
		lmbox_seg_path(store, items[i].seg_id, path, sizeof(path));
		if (unlink(path) == 0 || errno == ENOENT)
			items[i].len = UINT64_MAX; /* mark done */
	}
	for (i = 0; i < count; i++) {
		/* sorted: a segment's unlink (offset 0) precedes its punches */
		if (items[i].kind == LMBOX_RECLAIM_UNLINK) {
			unlinked_seg = items[i].len == UINT64_MAX ? items[i].seg_id : 0;
			continue;
		}
		if (items[i].seg_id == unlinked_seg)
			continue;
		if (cur != NULL)
			lmbox_reclaim_widen(store, txn, cur, &items[i], &punches[npunch]);
		else {
			punches[npunch].seg_id = items[i].seg_id;
			punches[npunch].start = items[i].offset;
			punches[npunch].end = items[i].offset + items[i].len;
		}
		npunch++;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);

	/* merge overlapping ranges, align inwards to whole blocks, punch */
	qsort(punches, npunch, sizeof(*punches), lmbox_punch_cmp);
	for (i = 0; i < npunch; ) {
		struct lmbox_punch p = punches[i];
		uint64_t start, end;

		for (i++; i < npunch && punches[i].seg_id == p.seg_id && punches[i].start <= p.end; i++) {
			if (punches[i].end > p.end)
				p.end = punches[i].end;
		}
		start = (p.start + LMBOX_PUNCH_ALIGN - 1) & ~(uint64_t)(LMBOX_PUNCH_ALIGN - 1);
		end = p.end & ~(uint64_t)(LMBOX_PUNCH_ALIGN - 1);
		if (end <= start)
			continue;
		if (fd < 0 || fd_seg != p.seg_id) {
			if (fd >= 0)
				close(fd);
			lmbox_seg_path(store, p.seg_id, path, sizeof(path));
			fd = open(path, O_RDWR | O_CLOEXEC);
			fd_seg = p.seg_id;
			if (fd < 0) {
				failed_any = failed_any || errno != ENOENT;
				continue;
			}
		}
		/* no punch support: the space comes back by compact */
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)start, (off_t)(end - start)) < 0 && errno != EOPNOTSUPP)
			failed_any = true;
	}
	if (fd >= 0)
		close(fd);
	free(punches);
	/* a failed punch leaves everything recorded, to be redone */
	if (failed_any)
		return 0;
	for (i = 0; i < count; i++) {
		if (items[i].kind != LMBOX_RECLAIM_UNLINK || items[i].len == UINT64_MAX)
			items[ok++] = items[i];
	}
	return ok;
}

struct lmbox_reclaim_done_ctx {
	const struct lmbox_reclaim_item *items;
	unsigned int count;
};

static int lmbox_reclaim_forget(struct lmbox_wctx *ctx, const struct lmbox_reclaim_item *items,
				unsigned int count)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[12];
	MDB_val k = { 12, key };
	int rc;

	for (unsigned int i = 0; i < count; i++) {
		lmbox_reclaim_key_encode(key, items[i].seg_id,
					 items[i].kind == LMBOX_RECLAIM_UNLINK ? 0 : items[i].offset);
		rc = mdb_del(ctx->txn, store->env->dbi_reclaim, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return lmbox_set_mdb_error(store, rc, "%s: clearing reclaim list", store->dir);
	}
	return 0;
}

static int lmbox_reclaim_done_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_reclaim_done_ctx *c = context;

	return lmbox_reclaim_forget(ctx, c->items, c->count);
}

int lmbox_reclaim_forget_done(struct lmbox_wctx *ctx)
{
	struct lmbox_env *env = ctx->store->env;

	return lmbox_reclaim_forget(ctx, env->reclaim_done, env->reclaim_done_count);
}

/* After a commit: punch/unlink, then forget the records.  Errors leave
 * them recorded: they are retried at the next open. */
void lmbox_reclaim_run(struct lmbox_store *store,
		       const struct lmbox_reclaim_item *_items, unsigned int count)
{
	struct lmbox_reclaim_item *items;
	struct lmbox_reclaim_done_ctx done;

	if ((items = malloc(sizeof(*items) * count)) == NULL)
		return;
	memcpy(items, _items, sizeof(*items) * count);
	done.items = items;
	done.count = lmbox_reclaim_do(store, items, count);
	if (done.count > 0) {
		/* Losing this commit in a crash only means punching again at
		 * the next open: its meta page is left unsynced (a deferred
		 * sync).  Not MDB_NOSYNC: that leaves the data pages unsynced
		 * too, and a power loss could then keep a meta page pointing
		 * at pages that never reached the disk. */
		store->defer_sync = true;
		(void)lmbox_write_nopurge(store, lmbox_reclaim_done_fn, &done);
		store->defer_sync = false;
	}
	free(items);
}

/* Every reclaim record of the store. */
static int lmbox_reclaim_collect(struct lmbox_store *store, struct lmbox_reclaim_item **items_r,
				 unsigned int *count_r, unsigned int *alloc_r)
{
	struct lmbox_env *env = store->env;
	struct lmbox_reclaim_item *items = NULL;
	unsigned int count = 0, alloc = 0;
	struct lmbox_reclaim_rec rec;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret;

	*items_r = NULL;
	*count_r = *alloc_r = 0;
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	if ((rc = mdb_cursor_open(txn, env->dbi_reclaim, &cur)) != 0) {
		mdb_txn_abort(txn);
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmbox_reclaim_item item;

		if (lmbox_reclaim_key_decode(k.mv_data, k.mv_size, &item.seg_id, &item.offset) < 0 ||
		    lmbox_reclaim_rec_decode(v.mv_data, v.mv_size, &rec) < 0)
			continue; /* lmbox_check reports and removes these */
		item.kind = rec.kind;
		item.len = rec.len;
		if (lmbox_grow_array(&items, &alloc, count + 1, sizeof(*items)) < 0)
			break;
		items[count++] = item;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	*items_r = items;
	*count_r = count;
	*alloc_r = alloc;
	return 0;
}

/* At open: redo what a crash interrupted.  Only reads and punches; the
 * records are forgotten by this process's next write, so opening a store
 * never waits for the write lock. */
int lmbox_reclaim_pending(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	struct lmbox_reclaim_item *items;
	unsigned int count, alloc, done;
	int ret;

	if ((ret = lmbox_reclaim_collect(store, &items, &count, &alloc)) < 0)
		return ret;
	if (count == 0) {
		free(items);
		return 0;
	}
	done = lmbox_reclaim_do(store, items, count);
	if (done > 0 && env->reclaim_done_count == 0) {
		free(env->reclaim_done);
		env->reclaim_done = items;
		env->reclaim_done_alloc = alloc;
		env->reclaim_done_count = done;
		items = NULL;
	}
	free(items);
	return 0;
}

/* The work LMBOX_OPEN_DEFER_RECLAIM left after commits: punch, forget the
 * records (one unsynced write, as after an ordinary commit), auto-compact,
 * and give back what a compaction killed in turn. */
int lmbox_store_reclaim(struct lmbox_store *store)
{
	struct lmbox_reclaim_item *items;
	unsigned int count, alloc;
	int ret, purge_ret;

	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	if (store->env->rdonly || (store->opts.flags & LMBOX_OPEN_RDONLY) != 0)
		return 0;
	/* expunges committed as pending (a POP3 QUIT's): delete their
	 * records now, which records their blobs for the reclaim below; if
	 * that fails, what earlier commits recorded is still given back */
	purge_ret = lmbox_pending_purge_now(store);
	for (int pass = 0; pass < 2; pass++) {
		if ((ret = lmbox_reclaim_collect(store, &items, &count, &alloc)) < 0)
			return ret;
		if (count > 0) {
			lmbox_reclaim_run(store, items, count);
			if (pass == 0) {
				lmbox_auto_compact(store, items, count);
				lmbox_densify_after_deletes(store);
			}
			lmbox_reserve_mdb_space(store);
		}
		free(items);
		if (count == 0)
			break;
	}
	/* what lmbox_write() leaves to us under LMBOX_OPEN_DEFER_RECLAIM */
	if ((store->opts.flags & LMBOX_OPEN_DEFER_RECLAIM) != 0)
		lmbox_mdb_trim(store);
	return purge_ret < 0 ? purge_ret : 0;
}
