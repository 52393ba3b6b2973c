/*
 * lmbox-lmdb.c: LMDB transactions as the library uses them.  Read
 * transactions adopt a map grown by another process; lmbox_write() runs a
 * caller's function inside one write transaction, grows the map (doubling,
 * up to map_max) on MDB_MAP_FULL and replays the function, then commits
 * and gives back the space of what the commit killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

/* Adopt a map size grown by another process.  Safe with read
 * transactions open as long as nothing holds a pointer into the old map:
 * readers copy what they hand out, iterators re-seek (map_gen). */
static int lmbox_adopt_map(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	MDB_envinfo info;
	int rc;

	if (env->map_pins > 0) {
		return lmbox_set_error(store, LMBOX_ERR_BUSY,
			"%s: map was grown by another process and cannot be remapped "
			"during a check", store->mdb_path);
	}
	if ((rc = mdb_env_set_mapsize(env->env, 0)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: mdb_env_set_mapsize(0) failed", store->mdb_path);
	env->map_gen++;
	mdb_env_info(env->env, &info);
	env->map_size = info.me_mapsize;
	return 0;
}

int lmbox_rtxn_begin(struct lmbox_store *store, MDB_txn **txn_r)
{
	int rc, ret;

	for (int attempt = 0; ; attempt++) {
		rc = mdb_txn_begin(store->env->env, NULL, MDB_RDONLY, txn_r);
		if (rc == 0)
			return 0;
		if (rc != MDB_MAP_RESIZED || attempt > 0)
			break;
		if ((ret = lmbox_adopt_map(store)) < 0)
			return ret;
	}
	return lmbox_set_mdb_error(store, rc, "%s: cannot begin read transaction",
				   store->mdb_path);
}

int lmbox_meta_get_u32(struct lmbox_store *store, MDB_txn *txn, const char *key,
		       uint32_t *value_r)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc;

	rc = mdb_get(txn, store->env->dbi_meta, &k, &v);
	if (rc == MDB_NOTFOUND)
		return LMBOX_ERR_NOTFOUND;
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: reading meta %s", store->mdb_path, key);
	if (lmbox_u32_decode(v.mv_data, v.mv_size, value_r) < 0)
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: meta %s has bad length %zu", store->mdb_path, key, v.mv_size);
	return 0;
}

int lmbox_meta_put_u32(struct lmbox_store *store, MDB_txn *txn, const char *key,
		       uint32_t value)
{
	unsigned char buf[4];
	MDB_val k = { strlen(key), (void *)key }, v = { 4, buf };
	int rc;

	lmbox_put_le32(buf, value);
	if ((rc = mdb_put(txn, store->env->dbi_meta, &k, &v, 0)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: writing meta %s", store->mdb_path, key);
	return 0;
}

static uint64_t lmbox_map_used(struct lmbox_env *env)
{
	MDB_envinfo info;
	MDB_stat st;

	if (mdb_env_info(env->env, &info) != 0 || mdb_env_stat(env->env, &st) != 0)
		return 0;
	return (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

/* Double the map (at least to twice what is used), up to map_max. */
static int lmbox_grow_map(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	uint64_t used = lmbox_map_used(env), new_size;
	MDB_envinfo info;
	int rc;

	if (env->map_pins > 0) {
		return lmbox_set_error(store, LMBOX_ERR_MAPFULL,
			"%s: LMDB map is full (%llu bytes) and cannot grow during a check",
			store->mdb_path, (unsigned long long)env->map_size);
	}
	new_size = env->map_size * 2;
	if (new_size < used * 2)
		new_size = used * 2;
	new_size = (new_size + (1 << 20) - 1) & ~(uint64_t)((1 << 20) - 1);
	if (new_size > store->opts.map_max)
		new_size = store->opts.map_max;
	if (new_size <= env->map_size) {
		return lmbox_set_error(store, LMBOX_ERR_MAPFULL,
			"%s: LMDB map is full at its maximum of %llu bytes (map_max)",
			store->mdb_path, (unsigned long long)store->opts.map_max);
	}
	if ((rc = mdb_env_set_mapsize(env->env, new_size)) != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: growing map to %llu bytes",
			store->mdb_path, (unsigned long long)new_size);
	}
	env->map_gen++;
	/* LMDB rounds up to what the file already uses */
	env->map_size = mdb_env_info(env->env, &info) == 0 ? info.me_mapsize : new_size;
	return 0;
}

/* Grow before the map is half full, so commits rarely meet MAP_FULL. */
void lmbox_maybe_grow_early(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	MDB_envinfo info;

	if (env->map_pins > 0 || mdb_env_info(env->env, &info) != 0)
		return;
	env->map_size = info.me_mapsize;
	if (env->map_size < store->opts.map_max && lmbox_map_used(env) > env->map_size / 2)
		(void)lmbox_grow_map(store);
}

/* Size of the full-disk reserve (below) for a file whose B-trees hold
 * used bytes: 1/16, within bounds. */
uint64_t lmbox_mdb_reserve_size(uint64_t used)
{
	uint64_t reserve;

	reserve = used / 16 < LMBOX_MDB_RESERVE_MIN ? LMBOX_MDB_RESERVE_MIN : used / 16;
	return reserve > LMBOX_MDB_RESERVE_MAX ? LMBOX_MDB_RESERVE_MAX : reserve;
}

/* Keep blocks allocated past the end of lmbox.mdb (without changing its
 * size), so that when deliveries have filled the disk a deletion can still
 * commit: LMDB's copy-on-write pages land in the reserve.  Deliveries fail
 * on their segment write first. */
void lmbox_reserve_mdb_space(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	uint64_t used = lmbox_map_used(env), reserve;
	int fd;

	/* sized by what the trees hold, not by the file's high-water mark:
	 * a deletion rewrites at most the pages in use */
	reserve = lmbox_mdb_reserve_size(lmbox_mdb_in_use_bytes(env));

	if (used == 0 || used + reserve / 2 <= env->reserved_to)
		return;
	if (mdb_env_get_fd(env->env, &fd) != 0)
		return;
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)used, (off_t)reserve) == 0)
		env->reserved_to = used + reserve;
}

int lmbox_env_sync(struct lmbox_store *store)
{
	struct lmbox_env *env = store->env;
	MDB_envinfo info;
	int rc;

	if (store->opts.fsync == LMBOX_FSYNC_NEVER || env->rdonly)
		return 0;
	/* the newest commit before the sync: it and all before it are
	 * durable after it */
	if ((rc = mdb_env_info(env->env, &info)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: mdb_env_info failed", store->mdb_path);
	if (info.me_last_txnid == env->synced_txnid)
		return 0;
	if ((rc = mdb_env_sync(env->env, 1)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: sync failed", store->mdb_path);
	env->synced_txnid = info.me_last_txnid;
	return 0;
}

static void lmbox_wctx_init(struct lmbox_wctx *ctx, struct lmbox_store *store)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->store = store;
	ctx->cur_fd = -1;
}

/* Run fn inside one LMDB write transaction and commit it.  fn must be a
 * pure function of its context and the database: on MDB_MAP_FULL the
 * transaction is aborted, the map doubled and fn called again.  Unless
 * !purge, expunges left pending (lmbox-pending.c) are applied first, in
 * the same transaction: fn never sees a pending message. */
static int lmbox_write_real(struct lmbox_store *store, lmbox_write_fn *fn, void *context,
			    bool purge)
{
	struct lmbox_wctx ctx;
	bool released = false, commit_nospace;
	/* this commit's, not the writes it makes after (reclaim, compaction) */
	bool defer_sync = store->defer_sync;
	int rc, ret;

	store->defer_sync = false;
	if ((ret = lmbox_store_check_usable(store, true)) < 0)
		return ret;
	for (int attempt = 0; ; attempt++) {
		lmbox_maybe_grow_early(store);
		lmbox_wctx_init(&ctx, store);
		rc = mdb_txn_begin(store->env->env, NULL, 0, &ctx.txn);
		if (rc == MDB_MAP_RESIZED && attempt < 3) {
			if ((ret = lmbox_adopt_map(store)) < 0)
				return ret;
			continue;
		}
		if (rc != 0) {
			return lmbox_set_mdb_error(store, rc,
				"%s: cannot begin write transaction", store->mdb_path);
		}
		commit_nospace = false;
		ret = purge ? lmbox_pending_purge(&ctx) : 0;
		if (ret == 0)
			ret = fn(&ctx, context);
		if (ret == 0)
			ret = lmbox_reclaim_forget_done(&ctx);
		if (ret == 0)
			ret = lmbox_wseg_flush(&ctx);
		if (ret == 0) {
			rc = mdb_txn_commit(ctx.txn);
			ctx.txn = NULL;
			if (rc != 0) {
				ret = lmbox_set_mdb_error(store, rc, "%s: commit failed",
							  store->mdb_path);
				/* LMDB reports a short page write as EIO: on a
				 * full disk that is what pwritev() gives */
				commit_nospace = rc == ENOSPC || rc == EDQUOT || rc == EIO;
			}
		}
		if (ctx.txn != NULL) {
			mdb_txn_abort(ctx.txn);
			ctx.txn = NULL;
		}
		if (ret == LMBOX_ERR_MAPFULL && attempt < 32) {
			/* the errmsg of a failed grow replaces the MAP_FULL one */
			if (lmbox_grow_map(store) == 0) {
				lmbox_wctx_free(&ctx);
				continue;
			}
		}
		/* A deletion (it writes no segment) that met a full disk:
		 * its new pages may be free pages whose blocks were punched
		 * (lmbox-trim.c).  Give it the blocks kept past the end of
		 * lmbox.mdb, once. */
		if (commit_nospace && !released && ctx.reclaim_count > 0 &&
		    ctx.sync_fd_count == 0 && lmbox_release_mdb_reserve(store)) {
			released = true;
			lmbox_wctx_free(&ctx);
			continue;
		}
		break;
	}
	/* The commit synced its pages but not its meta page (MDB_NOMETASYNC):
	 * that sync comes after the write lock is released, here or, for a
	 * deferred one, in lmbox_store_sync().  A commit whose dead space is
	 * given back is durable first (its reclaim may run right after). */
	if (ret == 0 && store->opts.fsync != LMBOX_FSYNC_NEVER) {
		unsigned int flags = 0;

		(void)mdb_env_get_flags(store->env->env, &flags);
		if ((flags & MDB_NOSYNC) != 0)
			; /* LMBOX_FSYNC_NEVER */
		else if (defer_sync && ctx.reclaim_count == 0)
			store->sync_pending = true;
		else if ((ret = lmbox_env_sync(store)) < 0)
			store->sync_pending = true;
	}
	/* LMBOX_TEST_NO_RECLAIM: tests simulate a crash right after commit */
	if (ret == 0) {
		store->env->reclaim_done_count = 0;
		lmbox_reserve_mdb_space(store);
	}
	/* LMBOX_OPEN_DEFER_RECLAIM: left to lmbox_store_reclaim() */
	if (ret == 0 && ctx.reclaim_count > 0 && getenv("LMBOX_TEST_NO_RECLAIM") == NULL &&
	    (store->opts.flags & LMBOX_OPEN_DEFER_RECLAIM) == 0) {
		lmbox_reclaim_run(store, ctx.reclaims, ctx.reclaim_count);
		lmbox_auto_compact(store, ctx.reclaims, ctx.reclaim_count);
		lmbox_densify_after_deletes(store);
		/* the space just punched can hold the reserve again */
		lmbox_reserve_mdb_space(store);
	}
	/* the trim is space management too: with LMBOX_OPEN_DEFER_RECLAIM it
	 * waits for lmbox_store_reclaim(), out of the commit's latency */
	if (ret == 0 && (store->opts.flags & LMBOX_OPEN_DEFER_RECLAIM) == 0)
		lmbox_mdb_trim(store);
	lmbox_wctx_free(&ctx);
	return ret;
}

int lmbox_write(struct lmbox_store *store, lmbox_write_fn *fn, void *context)
{
	return lmbox_write_real(store, fn, context, true);
}

int lmbox_write_nopurge(struct lmbox_store *store, lmbox_write_fn *fn, void *context)
{
	return lmbox_write_real(store, fn, context, false);
}
