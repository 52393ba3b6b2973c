/*
 * lmbox-compact.c: lmbox_compact() and lmbox_store_stat().  Hole punching
 * returns whole file-system blocks of dead blobs at once; what it cannot
 * return are the partial blocks at the edges of each hole, and a segment
 * stays allocated until its last blob dies.  Compaction copies the live
 * blobs of every segment with dead space into the current segment, one
 * segment per write transaction, after which the old segment has no live
 * blob and is unlinked by the normal reclaim path.
 *
 * Auto-compaction (after deletions, no admin involved) is selective: it
 * moves only the runs of live blobs whose move gives back more blocks than
 * it writes (lmbox_compact_pick), so what small messages deleted at random
 * leave behind comes back without rewriting the dense parts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmbox-private.h"

/* Bytes moved per write transaction: keeps the write lock short. */
#define LMBOX_COMPACT_BATCH (8 * 1024 * 1024)

struct lmbox_compact_ctx {
	uint32_t seg_id;
	/* auto-compaction: move only the blobs whose move frees clearly
	 * more blocks than it fills (lmbox_compact_pick), possibly into the
	 * same segment */
	bool selective;
	uint64_t moved_bytes;
	bool more;
};

struct lmbox_msg_ref {
	uint32_t folder_id, uid;
	uint64_t offset, len;
};

/* Selective compaction.  refs are the live blobs of one segment in offset
 * order; a cluster is a run of them that share file-system blocks (each
 * starts in the block where the previous one ends), so that punching can
 * give back none of the blocks of a cluster while one of its blobs lives.
 * A cluster is worth moving when its blocks (less one shared with the
 * segment header or with the space past the tail) hold at least 9/8
 * of its bytes: the move writes them densely at the tail and gives
 * back all those blocks.  A dense run (what was just appended) never
 * qualifies, and no byte is rewritten unless it frees more than itself,
 * whatever the pattern of deletions.  Keeps the chosen refs at the front;
 * returns their count. */
static unsigned int lmbox_compact_pick(struct lmbox_msg_ref *refs, unsigned int count,
				       uint64_t tail)
{
	unsigned int n = 0, start = 0;

	while (start < count) {
		uint64_t first = refs[start].offset / LMBOX_PUNCH_ALIGN, last, bytes = 0, blocks;
		unsigned int end = start;

		last = (refs[start].offset + refs[start].len - 1) / LMBOX_PUNCH_ALIGN;
		bytes = refs[start].len;
		for (end = start + 1; end < count && refs[end].offset / LMBOX_PUNCH_ALIGN <= last; end++) {
			last = (refs[end].offset + refs[end].len - 1) / LMBOX_PUNCH_ALIGN;
			bytes += refs[end].len;
		}
		blocks = last - first + 1;
		if (first == 0 && blocks > 0)
			blocks--;
		if (last == tail / LMBOX_PUNCH_ALIGN && blocks > 0)
			blocks--;
		if (blocks * LMBOX_PUNCH_ALIGN * 8 >= bytes * 9) {
			for (unsigned int i = start; i < end; i++)
				refs[n++] = refs[i];
		}
		start = end;
	}
	return n;
}

/* Move up to a batch of the segment's live blobs (found through the
 * live-blob index) to the current segment. */
static int lmbox_compact_seg_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_compact_ctx *c = context;
	struct lmbox_store *store = ctx->store;
	struct lmbox_msg_ref *refs = NULL;
	unsigned int count = 0, alloc = 0;
	struct lmbox_msg_meta meta;
	struct lmbox_blob_hdr hdr;
	struct lmbox_blob_rec rec;
	struct lmbox_seg_rec srec;
	unsigned char key[12];
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t batch = 0, offset;
	uint32_t seg_id;
	int rc, ret = 0, fd = -1;

	c->moved_bytes = 0;
	c->more = false;
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_blobs, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	lmbox_reclaim_key_encode(key, c->seg_id, 0);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_reclaim_key_decode(k.mv_data, k.mv_size, &seg_id, &offset) < 0 ||
		    seg_id != c->seg_id)
			break;
		if (!c->selective && batch >= LMBOX_COMPACT_BATCH) {
			c->more = true;
			break;
		}
		if (lmbox_blob_rec_decode(v.mv_data, v.mv_size, &rec) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: live-blob index entry %08X:%llu is malformed",
				store->mdb_path, seg_id, (unsigned long long)offset);
			break;
		}
		if (lmbox_grow_array(&refs, &alloc, count + 1, sizeof(*refs)) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			break;
		}
		refs[count].folder_id = rec.folder_id;
		refs[count].uid = rec.uid;
		refs[count].offset = offset;
		refs[count].len = rec.len;
		count++;
		batch += rec.len;
	}
	mdb_cursor_close(cur);
	if (ret == 0 && c->selective && count > 0) {
		lmbox_put_be32(key, c->seg_id);
		k.mv_data = key;
		k.mv_size = 4;
		if (mdb_get(ctx->txn, store->env->dbi_segs, &k, &v) != 0 ||
		    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &srec) < 0)
			count = 0;
		else
			count = lmbox_compact_pick(refs, count, srec.tail);
		for (unsigned int i = 0, b = 0; i < count; i++) {
			if (b >= LMBOX_COMPACT_BATCH) {
				count = i;
				c->more = true;
				break;
			}
			b += refs[i].len;
		}
	}
	if (ret == 0 && count > 0)
		ret = lmbox_seg_open_read(store, c->seg_id, &fd);

	for (unsigned int i = 0; i < count && ret == 0; i++) {
		uint64_t old_offset = refs[i].offset;

		if ((ret = lmbox_msg_load(store, ctx->txn, refs[i].folder_id, refs[i].uid,
					  &meta)) < 0 ||
		    meta.seg_id != c->seg_id || meta.seg_offset != old_offset) {
			/* moving on would loop forever: lmbox_check --repair
			 * rebuilds the index */
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: live-blob index entry %08X:%llu does not match uid %u "
				"of folder %u", store->mdb_path, c->seg_id,
				(unsigned long long)old_offset, refs[i].uid, refs[i].folder_id);
			break;
		}
		hdr.codec = meta.codec;
		hdr.phys_size = meta.phys_size;
		hdr.stored_size = meta.stored_size;
		hdr.checksum = meta.checksum;
		if ((ret = lmbox_wseg_append(ctx, &hdr, NULL, fd,
					     old_offset + LMBOX_BLOB_HDR_SIZE,
					     refs[i].folder_id, refs[i].uid,
					     &meta.seg_id, &meta.seg_offset)) < 0)
			break;
		if (meta.seg_id == c->seg_id && !c->selective) {
			/* still appending to the same segment: nothing gained */
			ret = lmbox_set_error(store, LMBOX_ERR_INVALID,
				"%s: cannot compact the current segment", store->dir);
			break;
		}
		if ((ret = lmbox_msg_save(store, ctx->txn, &meta, false)) < 0 ||
		    (ret = lmbox_wseg_blob_dead(ctx, c->seg_id, old_offset, meta.stored_size)) < 0)
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

/* Empty one segment into the current one; it is unlinked when its last
 * blob has moved. */
static int lmbox_compact_segment(struct lmbox_store *store, uint32_t seg_id,
				 uint64_t *moved_r)
{
	struct lmbox_compact_ctx c;
	int ret;

	*moved_r = 0;
	ret = lmbox_write(store, lmbox_compact_seal_fn, &seg_id);
	if (ret == LMBOX_ERR_BUSY)
		return 0; /* a writer is appending to it: left for next time */
	if (ret < 0)
		return ret;
	memset(&c, 0, sizeof(c));
	c.seg_id = seg_id;
	do {
		if ((ret = lmbox_write(store, lmbox_compact_seg_fn, &c)) < 0)
			return ret;
		*moved_r += c.moved_bytes;
	} while (c.more);
	return 0;
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
	uint64_t freed = 0;
	int ret;

	*bytes_freed_r = 0;
	if ((ret = lmbox_store_check_usable(store, true)) < 0)
		return ret;
	if ((ret = lmbox_sparse_segments(store, &list)) < 0)
		return ret;
	store->env->compacting = true;
	for (unsigned int i = 0; i < list.count && ret == 0; i++) {
		uint64_t before = lmbox_seg_alloc_bytes(store, list.ids[i]), moved;

		if ((ret = lmbox_compact_segment(store, list.ids[i], &moved)) < 0)
			break;
		/* the old segment is unlinked by now */
		if (before > moved + lmbox_seg_alloc_bytes(store, list.ids[i]))
			freed += before - moved - lmbox_seg_alloc_bytes(store, list.ids[i]);
	}
	store->env->compacting = false;
	free(list.ids);
	*bytes_freed_r = freed;
	return ret;
}

/* After a commit that killed blobs: in a segment whose allocated blocks
 * exceed its live bytes by more than a 32nd (plus 32 KiB), the blobs
 * that sit alone in blocks otherwise dead move to the tail
 * (lmbox_compact_pick), and their old blocks are punched.  Bounded per
 * call; what is left waits for the next deletion. */
#define LMBOX_AUTO_COMPACT_MAX_BATCHES 4
void lmbox_auto_compact(struct lmbox_store *store, const struct lmbox_reclaim_item *items,
			unsigned int count)
{
	char saved[LMBOX_ERRMSG_SIZE];
	uint32_t last = 0;
	unsigned int batches = 0;

	if (store->env->compacting || getenv("LMBOX_TEST_NO_AUTOCOMPACT") != NULL)
		return;
	memcpy(saved, store->errmsg, sizeof(saved));
	store->env->compacting = true;
	for (unsigned int i = 0; i < count && batches < LMBOX_AUTO_COMPACT_MAX_BATCHES; i++) {
		struct lmbox_compact_ctx c;
		struct lmbox_seg_rec rec;
		unsigned char key[4];
		MDB_val k = { 4, key }, v;
		MDB_txn *txn;
		uint64_t alloc;
		bool sparse = false;

		if (items[i].seg_id == last || items[i].kind != LMBOX_RECLAIM_PUNCH)
			continue;
		last = items[i].seg_id;
		if (lmbox_rtxn_begin(store, &txn) < 0)
			break;
		lmbox_put_be32(key, last);
		if (mdb_get(txn, store->env->dbi_segs, &k, &v) == 0 &&
		    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) == 0) {
			alloc = lmbox_seg_alloc_bytes(store, last);
			sparse = alloc > rec.live_bytes + rec.live_bytes / 32 + 32 * 1024;
		}
		mdb_txn_abort(txn);
		if (!sparse)
			continue;
		memset(&c, 0, sizeof(c));
		c.seg_id = last;
		c.selective = true;
		do {
			if (lmbox_write(store, lmbox_compact_seg_fn, &c) < 0)
				break;
			batches++;
		} while (c.more && batches < LMBOX_AUTO_COMPACT_MAX_BATCHES);
	}
	store->env->compacting = false;
	memcpy(store->errmsg, saved, sizeof(saved));
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
	if (store->env->has_pending) {
		if ((rc = mdb_stat(txn, store->env->dbi_pending, &mst)) != 0)
			goto mdb_fail;
		stat_r->pending_expunges = mst.ms_entries;
	}
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
