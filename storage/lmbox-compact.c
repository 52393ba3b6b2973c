/*
 * lmbox-compact.c: lmbox_compact() and lmbox_store_stat().  Hole punching
 * returns whole file-system blocks of dead blobs at once; what it cannot
 * return are the partial blocks at the edges of each hole, and a segment
 * stays allocated until its last blob dies.  Compaction copies the live
 * blobs of every segment with dead space into the current segment, one
 * segment per write transaction, after which the old segment has no live
 * blob and is unlinked by the normal reclaim path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmbox-private.h"

struct lmbox_compact_ctx {
	uint32_t seg_id;
	uint64_t moved_bytes;
};

struct lmbox_msg_ref {
	uint32_t folder_id, uid;
};

static int lmbox_compact_seg_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_compact_ctx *c = context;
	struct lmbox_store *store = ctx->store;
	struct lmbox_msg_ref *refs = NULL;
	unsigned int count = 0, alloc = 0;
	struct lmbox_msg_meta meta;
	struct lmbox_blob_hdr hdr;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret = 0, fd = -1;

	c->moved_bytes = 0;
	/* the messages in this segment (a full scan: compaction is rare) */
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_msgs, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmbox_msg_ref ref;

		if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &ref.folder_id, &ref.uid) < 0 ||
		    lmbox_msg_decode(v.mv_data, v.mv_size, &meta) < 0 ||
		    meta.seg_id != c->seg_id)
			continue;
		if (lmbox_grow_array(&refs, &alloc, count + 1, sizeof(*refs)) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			break;
		}
		refs[count++] = ref;
	}
	mdb_cursor_close(cur);
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = lmbox_set_mdb_error(store, rc, "%s: scanning messages", store->dir);
	if (ret == 0 && count > 0)
		ret = lmbox_seg_open_read(store, c->seg_id, &fd);

	for (unsigned int i = 0; i < count && ret == 0; i++) {
		uint32_t old_seg;
		uint64_t old_offset;

		if ((ret = lmbox_msg_load(store, ctx->txn, refs[i].folder_id, refs[i].uid,
					  &meta)) < 0)
			break;
		old_seg = meta.seg_id;
		old_offset = meta.seg_offset;
		hdr.codec = meta.codec;
		hdr.phys_size = meta.phys_size;
		hdr.stored_size = meta.stored_size;
		hdr.checksum = meta.checksum;
		if ((ret = lmbox_wseg_append(ctx, &hdr, NULL, fd,
					     old_offset + LMBOX_BLOB_HDR_SIZE,
					     refs[i].folder_id, refs[i].uid,
					     &meta.seg_id, &meta.seg_offset)) < 0)
			break;
		if (meta.seg_id == old_seg) {
			/* still appending to the same segment: nothing gained */
			ret = lmbox_set_error(store, LMBOX_ERR_INVALID,
				"%s: cannot compact the current segment", store->dir);
			break;
		}
		if ((ret = lmbox_msg_save(store, ctx->txn, &meta, false)) < 0 ||
		    (ret = lmbox_wseg_blob_dead(ctx, old_seg, old_offset, meta.stored_size)) < 0)
			break;
		c->moved_bytes += LMBOX_BLOB_HDR_SIZE + meta.stored_size;
	}
	if (fd >= 0)
		close(fd);
	free(refs);
	return ret;
}

/* Seal the current segment so its blobs can be moved out of it. */
static int lmbox_compact_seal_fn(struct lmbox_wctx *ctx, void *context)
{
	return lmbox_wseg_seal(ctx, *(uint32_t *)context);
}

struct lmbox_seg_list {
	uint32_t *ids;
	unsigned int count, alloc;
};

static int lmbox_sparse_segments(struct lmbox_store *store, struct lmbox_seg_list *list)
{
	struct lmbox_seg_rec rec;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t id;
	int rc, ret;

	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	if ((rc = mdb_cursor_open(txn, store->env->dbi_segs, &cur)) != 0) {
		mdb_txn_abort(txn);
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0 ||
		    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) < 0)
			continue;
		/* dead space = everything after the header not live */
		if (rec.tail - LMBOX_SEG_HDR_SIZE == rec.live_bytes)
			continue;
		if (lmbox_grow_array(&list->ids, &list->alloc, list->count + 1,
				     sizeof(uint32_t)) < 0)
			break;
		list->ids[list->count++] = id;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return 0;
}

static uint64_t lmbox_seg_alloc_bytes(struct lmbox_store *store, uint32_t seg_id)
{
	char path[4096];
	struct stat st;

	lmbox_seg_path(store, seg_id, path, sizeof(path));
	return stat(path, &st) < 0 ? 0 : (uint64_t)st.st_blocks * 512;
}

int lmbox_compact(struct lmbox_store *store, uint64_t *bytes_freed_r)
{
	struct lmbox_seg_list list = { NULL, 0, 0 };
	struct lmbox_compact_ctx c;
	uint64_t freed = 0;
	int ret;

	*bytes_freed_r = 0;
	if ((ret = lmbox_store_check_usable(store, true)) < 0)
		return ret;
	if ((ret = lmbox_sparse_segments(store, &list)) < 0)
		return ret;
	for (unsigned int i = 0; i < list.count && ret == 0; i++) {
		uint64_t before = lmbox_seg_alloc_bytes(store, list.ids[i]);

		if ((ret = lmbox_write(store, lmbox_compact_seal_fn, &list.ids[i])) < 0)
			break;
		memset(&c, 0, sizeof(c));
		c.seg_id = list.ids[i];
		if ((ret = lmbox_write(store, lmbox_compact_seg_fn, &c)) < 0)
			break;
		/* the old segment is unlinked by now (or punched, if it
		 * still had a live blob: it cannot) */
		if (before > c.moved_bytes + lmbox_seg_alloc_bytes(store, list.ids[i]))
			freed += before - c.moved_bytes - lmbox_seg_alloc_bytes(store, list.ids[i]);
	}
	free(list.ids);
	*bytes_freed_r = freed;
	return ret;
}

/* ------------------------------------------------------------------ stat */

/* What is on disk, including dead segments not unlinked yet. */
static void lmbox_stat_seg_files(struct lmbox_store *store, struct lmbox_store_stat *stat_r)
{
	DIR *dir = opendir(store->seg_dir);
	struct dirent *d;
	struct stat st;

	if (dir == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		if (strlen(d->d_name) != 8 ||
		    strspn(d->d_name, "0123456789ABCDEF") != 8 ||
		    fstatat(dirfd(dir), d->d_name, &st, 0) < 0)
			continue;
		stat_r->segment_count++;
		stat_r->segment_bytes += (uint64_t)st.st_size;
		stat_r->segment_alloc_bytes += (uint64_t)st.st_blocks * 512;
	}
	closedir(dir);
}

int lmbox_store_stat(struct lmbox_store *store, struct lmbox_store_stat *stat_r)
{
	struct lmbox_folder_info info;
	struct lmbox_seg_rec rec;
	MDB_envinfo envinfo;
	MDB_stat mst;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t id;
	int rc, ret;

	memset(stat_r, 0, sizeof(*stat_r));
	if ((ret = lmbox_store_check_usable(store, false)) < 0 ||
	    (ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	if ((ret = lmbox_meta_get_u32(store, txn, LMBOX_META_FORMAT, &stat_r->format_version)) < 0)
		goto out;

	if ((rc = mdb_cursor_open(txn, store->env->dbi_folders, &cur)) != 0)
		goto mdb_fail;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_folder_decode(v.mv_data, v.mv_size, &info) < 0)
			continue;
		stat_r->folder_count++;
		stat_r->message_count += info.count;
		stat_r->phys_bytes += info.psize_total;
	}
	mdb_cursor_close(cur);

	if ((rc = mdb_cursor_open(txn, store->env->dbi_segs, &cur)) != 0)
		goto mdb_fail;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0 ||
		    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) < 0)
			continue;
		stat_r->stored_bytes += rec.live_bytes - (uint64_t)rec.live_count * LMBOX_BLOB_HDR_SIZE;
	}
	mdb_cursor_close(cur);
	lmbox_stat_seg_files(store, stat_r);

	if ((rc = mdb_stat(txn, store->env->dbi_reclaim, &mst)) != 0)
		goto mdb_fail;
	stat_r->reclaim_pending = mst.ms_entries;
	if ((rc = mdb_env_info(store->env->env, &envinfo)) != 0 ||
	    (rc = mdb_env_stat(store->env->env, &mst)) != 0)
		goto mdb_fail;
	stat_r->map_size = envinfo.me_mapsize;
	stat_r->map_used = (uint64_t)(envinfo.me_last_pgno + 1) * mst.ms_psize;
	goto out;
mdb_fail:
	ret = lmbox_set_mdb_error(store, rc, "%s: stat", store->dir);
out:
	mdb_txn_abort(txn);
	return ret;
}
