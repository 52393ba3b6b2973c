/*
 * lmbox-segment.c: body segment files.  Blobs are appended at the committed
 * tail of an open (unsealed) segment by the writer that holds its claim: an
 * exclusive flock on the writer's own fd of the file, taken before the tail
 * is read and released only after the commit that records the new tail.
 * lmbox_txn_prepare() claims a segment without the LMDB write lock and
 * writes and syncs there, so concurrent writers do that in parallel; under
 * the write lock claims are only tried (LOCK_NB), and when every open
 * segment is claimed a new one is created.  The new tail is recorded in
 * LMDB by the commit, so bytes written by a writer that died before
 * committing are simply overwritten by the next claim holder.  Dead blobs
 * are recorded in the "reclaim" DB in the commit that kills them
 * (lmbox-reclaim.c gives the space back after it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <linux/falloc.h>

#include "lmbox-private.h"

void lmbox_seg_path(const struct lmbox_store *store, uint32_t seg_id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%08X", store->seg_dir, seg_id);
}

int lmbox_pread_full(struct lmbox_store *store, int fd, void *buf, size_t size,
		     uint64_t offset, const char *what)
{
	unsigned char *p = buf;

	while (size > 0) {
		ssize_t n = pread(fd, p, size, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return lmbox_set_errno(store, errno, "%s: read at offset %llu failed",
					       what, (unsigned long long)offset);
		}
		if (n == 0) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: file ends at offset %llu, %zu bytes short (truncated)",
				what, (unsigned long long)offset, size);
		}
		p += n;
		size -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

int lmbox_pwrite_full(struct lmbox_store *store, int fd, const void *buf, size_t size,
		      uint64_t offset, const char *what)
{
	const unsigned char *p = buf;

	while (size > 0) {
		ssize_t n = pwrite(fd, p, size, (off_t)offset);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return lmbox_set_errno(store, errno, "%s: write at offset %llu failed",
					       what, (unsigned long long)offset);
		}
		p += n;
		size -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

int lmbox_seg_open_read(struct lmbox_store *store, uint32_t seg_id, int *fd_r)
{
	char path[4096];

	lmbox_seg_path(store, seg_id, path, sizeof(path));
	*fd_r = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd_r < 0)
		return lmbox_set_errno(store, errno, "open(%s) failed", path);
	return 0;
}

/* ----------------------------------------------------------------- claims */

/* Open segments a writer may claim are few (one per writer that ever had to
 * wait for one): the newest records are tried first, and no more than this
 * many. */
#define LMBOX_CLAIM_TRIES 16
/* ... among the newest this many segment records (sealed ones are most of
 * a big store's: the scan stays short) */
#define LMBOX_CLAIM_SCAN 64

/* The open segments of a snapshot, the current one first. */
static int lmbox_seg_open_ids(struct lmbox_store *store, MDB_txn *txn, uint32_t cur,
			      uint32_t *ids, unsigned int max, unsigned int *count_r)
{
	struct lmbox_seg_rec rec;
	MDB_cursor *cursor;
	MDB_val k, v;
	unsigned int n = 0, scanned = 0;
	uint32_t id;
	int rc;

	if (cur != 0)
		ids[n++] = cur;
	if ((rc = mdb_cursor_open(txn, store->env->dbi_segs, &cursor)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: segment cursor", store->dir);
	for (rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
	     rc == 0 && n < max && scanned++ < LMBOX_CLAIM_SCAN;
	     rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV)) {
		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0 ||
		    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) < 0 ||
		    (rec.flags & LMBOX_SEG_SEALED) != 0 || id == cur)
			continue;
		ids[n++] = id;
	}
	mdb_cursor_close(cursor);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmbox_set_mdb_error(store, rc, "%s: reading segment records", store->dir);
	*count_r = n;
	return 0;
}

/* Open seg_id for writing and take its claim without waiting: 1 with
 * *fd_r, 0 if another writer holds it (or the file is gone), <0 error. */
static int lmbox_seg_try_claim(struct lmbox_store *store, uint32_t seg_id, int *fd_r)
{
	char path[4096];
	int fd;

	lmbox_seg_path(store, seg_id, path, sizeof(path));
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return 0; /* unlinked under us, or lost: not ours to judge */
		return lmbox_set_errno(store, errno, "open(%s) failed", path);
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		close(fd);
		if (errno == EWOULDBLOCK)
			return 0;
		return lmbox_set_errno(store, errno, "flock(%s) failed", path);
	}
	*fd_r = fd;
	return 1;
}

static bool lmbox_claims_have(const struct lmbox_claim *claims, unsigned int count,
			      uint32_t seg_id)
{
	for (unsigned int i = 0; i < count; i++) {
		if (claims[i].seg_id == seg_id)
			return true;
	}
	return false;
}

int lmbox_seg_claim(struct lmbox_store *store, const struct lmbox_claim *claims,
		    unsigned int count, uint64_t len, struct lmbox_claim *claim_r)
{
	uint32_t ids[LMBOX_CLAIM_TRIES], cur;
	unsigned int n = 0;
	struct lmbox_seg_rec rec;
	unsigned char key[4];
	MDB_val k = { 4, key }, v;
	MDB_txn *txn;
	int ret, rc, fd;

	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	ret = lmbox_meta_get_u32(store, txn, LMBOX_META_CUR_SEG, &cur);
	if (ret == LMBOX_ERR_NOTFOUND)
		ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: segment meta missing",
				      store->mdb_path);
	if (ret == 0)
		ret = lmbox_seg_open_ids(store, txn, cur, ids, LMBOX_CLAIM_TRIES, &n);
	mdb_txn_abort(txn);
	if (ret < 0)
		return ret;
	for (unsigned int i = 0; i < n; i++) {
		if (lmbox_claims_have(claims, count, ids[i]))
			continue;
		if ((ret = lmbox_seg_try_claim(store, ids[i], &fd)) < 0)
			return ret;
		if (ret == 0)
			continue;
		/* The tail from a snapshot begun after the claim: the last
		 * holder released it only after its commit. */
		if ((ret = lmbox_rtxn_begin(store, &txn)) < 0) {
			close(fd);
			return ret;
		}
		lmbox_put_be32(key, ids[i]);
		rc = mdb_get(txn, store->env->dbi_segs, &k, &v);
		ret = rc == 0 ? lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) : -1;
		mdb_txn_abort(txn);
		if (rc != 0 || ret < 0 || (rec.flags & LMBOX_SEG_SEALED) != 0) {
			/* sealed or gone since the listing */
			close(fd);
			continue;
		}
		memset(claim_r, 0, sizeof(*claim_r));
		claim_r->seg_id = ids[i];
		claim_r->fd = fd;
		claim_r->end = rec.tail;
		claim_r->full = rec.tail > LMBOX_SEG_HDR_SIZE &&
			rec.tail + len > store->opts.segment_max;
		return 1;
	}
	return 0;
}

int lmbox_seg_write_blob(struct lmbox_store *store, int fd, const char *what,
			 const struct lmbox_blob_hdr *hdr, const void *mem,
			 int src_fd, uint64_t src_offset, uint64_t pos)
{
	unsigned char hbuf[LMBOX_BLOB_HDR_SIZE];
	int ret;

	lmbox_blob_hdr_encode(hdr, hbuf);
	if ((ret = lmbox_pwrite_full(store, fd, hbuf, sizeof(hbuf), pos, what)) < 0)
		return ret;
	if (mem != NULL) {
		ret = lmbox_pwrite_full(store, fd, mem, hdr->stored_size,
					pos + LMBOX_BLOB_HDR_SIZE, what);
	} else {
		unsigned char *buf = malloc(LMBOX_IO_CHUNK);
		uint64_t done = 0;

		if (buf == NULL)
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
		while (ret == 0 && done < hdr->stored_size) {
			size_t n = hdr->stored_size - done > LMBOX_IO_CHUNK ?
				LMBOX_IO_CHUNK : (size_t)(hdr->stored_size - done);
			ret = lmbox_pread_full(store, src_fd, buf, n, src_offset + done,
					       "blob source");
			if (ret == 0) {
				ret = lmbox_pwrite_full(store, fd, buf, n,
					pos + LMBOX_BLOB_HDR_SIZE + done, what);
			}
			done += n;
		}
		free(buf);
	}
	return ret;
}

/* ------------------------------------------------------ write transaction */

static int lmbox_wseg_get(struct lmbox_wctx *ctx, uint32_t seg_id, struct lmbox_wseg **seg_r)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[4];
	MDB_val k = { 4, key }, v;
	struct lmbox_wseg *seg;
	int rc;

	for (unsigned int i = 0; i < ctx->seg_count; i++) {
		if (ctx->segs[i].seg_id == seg_id) {
			*seg_r = &ctx->segs[i];
			return ctx->segs[i].deleted ? LMBOX_ERR_NOTFOUND : 0;
		}
	}
	lmbox_put_be32(key, seg_id);
	rc = mdb_get(ctx->txn, store->env->dbi_segs, &k, &v);
	if (rc == MDB_NOTFOUND)
		return lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: segment %08X has no record",
				       store->dir, seg_id);
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: reading segment %08X record",
					   store->dir, seg_id);
	if (lmbox_grow_array(&ctx->segs, &ctx->seg_alloc, ctx->seg_count + 1,
			     sizeof(*ctx->segs)) < 0)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	seg = &ctx->segs[ctx->seg_count];
	memset(seg, 0, sizeof(*seg));
	seg->seg_id = seg_id;
	if (lmbox_seg_rec_decode(v.mv_data, v.mv_size, &seg->rec) < 0) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: record of segment %08X is malformed", store->mdb_path, seg_id);
	}
	ctx->seg_count++;
	*seg_r = seg;
	return 0;
}

static bool lmbox_wctx_seg_deleted(const struct lmbox_wctx *ctx, uint32_t seg_id)
{
	for (unsigned int i = 0; i < ctx->seg_count; i++) {
		if (ctx->segs[i].seg_id == seg_id)
			return ctx->segs[i].deleted;
	}
	return false;
}

static int lmbox_wctx_keep_fd(struct lmbox_wctx *ctx, int fd)
{
	if (lmbox_grow_array(&ctx->sync_fds, &ctx->sync_fd_alloc,
			     ctx->sync_fd_count + 1, sizeof(int)) < 0) {
		close(fd);
		return lmbox_set_error(ctx->store, LMBOX_ERR_NOMEM, "out of memory");
	}
	ctx->sync_fds[ctx->sync_fd_count++] = fd;
	return 0;
}

static int lmbox_add_reclaim(struct lmbox_wctx *ctx, uint32_t seg_id, uint8_t kind,
			     uint64_t offset, uint64_t len)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_reclaim_rec rec = { kind, len };
	unsigned char key[12], val[LMBOX_RECLAIM_REC_SIZE];
	MDB_val k = { 12, key }, v = { LMBOX_RECLAIM_REC_SIZE, val };
	struct lmbox_reclaim_item *item;
	int rc;

	lmbox_reclaim_key_encode(key, seg_id, offset);
	lmbox_reclaim_rec_encode(&rec, val);
	if ((rc = mdb_put(ctx->txn, store->env->dbi_reclaim, &k, &v, 0)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: recording dead space", store->dir);
	if (lmbox_grow_array(&ctx->reclaims, &ctx->reclaim_alloc,
			     ctx->reclaim_count + 1, sizeof(*ctx->reclaims)) < 0)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	item = &ctx->reclaims[ctx->reclaim_count++];
	item->seg_id = seg_id;
	item->kind = kind;
	item->offset = offset;
	item->len = len;
	return 0;
}

static int lmbox_wseg_create(struct lmbox_wctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_seg_hdr hdr;
	struct lmbox_wseg *seg;
	unsigned char buf[LMBOX_SEG_HDR_SIZE];
	char path[4096];
	uint32_t id = ctx->next_seg_id;
	int fd, ret;

	if (id == 0 || id == UINT32_MAX)
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: segment ids exhausted",
				       store->mdb_path);
	lmbox_seg_path(store, id, path, sizeof(path));
	/* An existing file of this id was left by a writer that died before
	 * committing it: nothing refers to it, so truncating is safe. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, store->opts.file_mode);
	if (fd < 0)
		return lmbox_set_errno(store, errno, "creating segment %s failed", path);
	if ((ret = lmbox_wctx_keep_fd(ctx, fd)) < 0)
		return ret;
	/* others see it once committed: by then it must be claimed */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return lmbox_set_errno(store, errno, "flock(%s) failed", path);
	memset(&hdr, 0, sizeof(hdr));
	hdr.version = LMBOX_SEG_VERSION;
	hdr.seg_id = id;
	hdr.created = lmbox_now();
	lmbox_seg_hdr_encode(&hdr, buf);
	if ((ret = lmbox_pwrite_full(store, fd, buf, sizeof(buf), 0, path)) < 0)
		return ret;
	if (lmbox_grow_array(&ctx->segs, &ctx->seg_alloc, ctx->seg_count + 1,
			     sizeof(*ctx->segs)) < 0)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	seg = &ctx->segs[ctx->seg_count++];
	memset(seg, 0, sizeof(*seg));
	seg->seg_id = id;
	seg->rec.tail = LMBOX_SEG_HDR_SIZE;
	ctx->cur_seg = id;
	ctx->cur_fd = fd;
	ctx->cur_created = true;
	ctx->next_seg_id = id + 1;
	ctx->meta_dirty = true;
	return 0;
}

/* Under the write lock: claim an open segment, the current one first,
 * without waiting (a claim holder may be waiting for this lock), or create
 * one when all are claimed. */
static int lmbox_wseg_load_current(struct lmbox_wctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	uint32_t ids[LMBOX_CLAIM_TRIES], cur;
	unsigned int n;
	struct lmbox_wseg *seg;
	int ret, fd;

	if ((ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_CUR_SEG, &cur)) < 0 ||
	    (ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_NEXT_SEG_ID,
				      &ctx->next_seg_id)) < 0) {
		return ret != LMBOX_ERR_NOTFOUND ? ret :
			lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: segment meta missing",
					store->mdb_path);
	}
	if ((ret = lmbox_seg_open_ids(store, ctx->txn, cur, ids, LMBOX_CLAIM_TRIES, &n)) < 0)
		return ret;
	for (unsigned int i = 0; i < n; i++) {
		ret = lmbox_wseg_get(ctx, ids[i], &seg);
		if (ret == LMBOX_ERR_NOTFOUND && ids[i] == cur &&
		    !lmbox_wctx_seg_deleted(ctx, cur)) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: current segment %08X has no record", store->mdb_path, cur);
		}
		if (ret == LMBOX_ERR_NOTFOUND)
			continue; /* unlinked earlier in this transaction */
		if (ret < 0)
			return ret;
		/* sealed or emptied earlier in this transaction */
		if ((seg->rec.flags & LMBOX_SEG_SEALED) != 0)
			continue;
		ret = lmbox_seg_try_claim(store, ids[i], &fd);
		if (ret == 0 && ids[i] == cur) {
			char path[4096];

			lmbox_seg_path(store, cur, path, sizeof(path));
			if (access(path, F_OK) < 0 && errno == ENOENT) {
				return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
					"segment %s is missing", path);
			}
		}
		if (ret < 0)
			return ret;
		if (ret == 0)
			continue;
		if ((ret = lmbox_wctx_keep_fd(ctx, fd)) < 0)
			return ret;
		ctx->cur_seg = ids[i];
		ctx->cur_fd = fd;
		return 0;
	}
	return lmbox_wseg_create(ctx);
}

static int lmbox_wseg_current(struct lmbox_wctx *ctx, struct lmbox_wseg **seg_r)
{
	for (unsigned int i = 0; i < ctx->seg_count; i++) {
		if (ctx->segs[i].seg_id == ctx->cur_seg) {
			*seg_r = &ctx->segs[i];
			return 0;
		}
	}
	return lmbox_set_error(ctx->store, LMBOX_ERR_CORRUPT, "%s: current segment lost",
			       ctx->store->dir);
}

static int lmbox_wseg_seal_one(struct lmbox_wctx *ctx, struct lmbox_wseg *seg)
{
	seg->rec.flags |= LMBOX_SEG_SEALED;
	if (seg->rec.live_count == 0) {
		seg->deleted = true;
		return lmbox_add_reclaim(ctx, seg->seg_id, LMBOX_RECLAIM_UNLINK, 0, 0);
	}
	return 0;
}

static int lmbox_wseg_rotate(struct lmbox_wctx *ctx, struct lmbox_wseg *old)
{
	int ret;

	if ((ret = lmbox_wseg_seal_one(ctx, old)) < 0)
		return ret;
	return lmbox_wseg_create(ctx);
}

static int lmbox_blob_put(struct lmbox_wctx *ctx, uint32_t seg_id, uint64_t offset,
			  uint64_t len, uint32_t folder_id, uint32_t uid)
{
	struct lmbox_blob_rec rec = { folder_id, uid, len };
	unsigned char key[12], val[LMBOX_BLOB_REC_SIZE];
	MDB_val k = { 12, key }, v = { LMBOX_BLOB_REC_SIZE, val };
	int rc;

	lmbox_reclaim_key_encode(key, seg_id, offset);
	lmbox_blob_rec_encode(&rec, val);
	if ((rc = mdb_put(ctx->txn, ctx->store->env->dbi_blobs, &k, &v, 0)) != 0) {
		return lmbox_set_mdb_error(ctx->store, rc, "%s: indexing blob %08X:%llu",
					   ctx->store->dir, seg_id, (unsigned long long)offset);
	}
	return 0;
}

int lmbox_wseg_blob_owner(struct lmbox_wctx *ctx, uint32_t seg_id, uint64_t offset,
			  uint64_t stored_size, uint32_t folder_id, uint32_t uid)
{
	return lmbox_blob_put(ctx, seg_id, offset, LMBOX_BLOB_HDR_SIZE + stored_size,
			      folder_id, uid);
}

int lmbox_wseg_append(struct lmbox_wctx *ctx, const struct lmbox_blob_hdr *hdr,
		      const void *mem, int src_fd, uint64_t src_offset,
		      uint32_t folder_id, uint32_t uid,
		      uint32_t *seg_id_r, uint64_t *offset_r)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_wseg *seg = NULL;
	uint64_t len = LMBOX_BLOB_HDR_SIZE + hdr->stored_size, pos;
	char path[4096];
	int ret;

	if (ctx->cur_seg == 0 && (ret = lmbox_wseg_load_current(ctx)) < 0)
		return ret;
	if ((ret = lmbox_wseg_current(ctx, &seg)) < 0)
		return ret;
	if (seg->rec.tail > LMBOX_SEG_HDR_SIZE &&
	    seg->rec.tail + len > store->opts.segment_max) {
		if ((ret = lmbox_wseg_rotate(ctx, seg)) < 0 ||
		    (ret = lmbox_wseg_current(ctx, &seg)) < 0)
			return ret;
	}
	lmbox_seg_path(store, seg->seg_id, path, sizeof(path));
	pos = seg->rec.tail;
	if ((ret = lmbox_seg_write_blob(store, ctx->cur_fd, path, hdr, mem, src_fd,
					src_offset, pos)) < 0)
		return ret;
	if ((ret = lmbox_blob_put(ctx, seg->seg_id, pos, len, folder_id, uid)) < 0)
		return ret;
	seg->rec.tail += len;
	seg->rec.live_count++;
	seg->rec.live_bytes += len;
	*seg_id_r = seg->seg_id;
	*offset_r = pos;
	return 0;
}

int lmbox_wseg_seal(struct lmbox_wctx *ctx, uint32_t seg_id)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_wseg *seg;
	uint32_t cur;
	int ret, fd;

	if ((ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_CUR_SEG, &cur)) < 0 ||
	    (ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_NEXT_SEG_ID,
				      &ctx->next_seg_id)) < 0)
		return ret == LMBOX_ERR_NOTFOUND ? LMBOX_ERR_CORRUPT : ret;
	if (seg_id == 0)
		return 0;
	if ((ret = lmbox_wseg_get(ctx, seg_id, &seg)) < 0)
		return ret == LMBOX_ERR_NOTFOUND ? 0 : ret;
	if ((seg->rec.flags & LMBOX_SEG_SEALED) != 0)
		return 0;
	/* only the claim holder may seal: a writer may be appending to it */
	if ((ret = lmbox_seg_try_claim(store, seg_id, &fd)) < 0)
		return ret;
	if (ret == 0) {
		return lmbox_set_error(store, LMBOX_ERR_BUSY,
			"%s: segment %08X is being appended to", store->dir, seg_id);
	}
	if ((ret = lmbox_wctx_keep_fd(ctx, fd)) < 0 ||
	    (ret = lmbox_wseg_seal_one(ctx, seg)) < 0)
		return ret;
	if (cur == seg_id) {
		/* flush writes cur_seg = 0: the next append starts a new
		 * segment (or claims another open one) */
		ctx->cur_seg = 0;
		ctx->meta_dirty = true;
	}
	return 0;
}

int lmbox_wseg_adopt(struct lmbox_wctx *ctx, const struct lmbox_blob_hdr *hdr,
		     uint32_t seg_id, uint64_t offset, uint32_t folder_id, uint32_t uid)
{
	struct lmbox_wseg *seg;
	uint64_t len = LMBOX_BLOB_HDR_SIZE + hdr->stored_size;
	int ret;

	ret = lmbox_wseg_get(ctx, seg_id, &seg);
	if (ret == LMBOX_ERR_NOTFOUND)
		return 1;
	if (ret < 0)
		return ret;
	/* Under our claim nobody else moves the tail or seals; anything
	 * else (a repair in between) and the blob is written again. */
	if ((seg->rec.flags & LMBOX_SEG_SEALED) != 0 || seg->rec.tail != offset)
		return 1;
	if ((ret = lmbox_blob_put(ctx, seg_id, offset, len, folder_id, uid)) < 0)
		return ret;
	seg->rec.tail += len;
	seg->rec.live_count++;
	seg->rec.live_bytes += len;
	return 0;
}

int lmbox_wseg_seal_claims(struct lmbox_wctx *ctx, const struct lmbox_claim *claims,
			   unsigned int count)
{
	struct lmbox_wseg *seg;
	uint32_t cur;
	int ret;

	for (unsigned int i = 0; i < count; i++) {
		if (!claims[i].full)
			continue;
		ret = lmbox_wseg_get(ctx, claims[i].seg_id, &seg);
		if (ret == LMBOX_ERR_NOTFOUND)
			continue;
		if (ret < 0)
			return ret;
		if ((seg->rec.flags & LMBOX_SEG_SEALED) != 0)
			continue;
		if ((ret = lmbox_wseg_seal_one(ctx, seg)) < 0)
			return ret;
		if ((ret = lmbox_meta_get_u32(ctx->store, ctx->txn, LMBOX_META_CUR_SEG,
					      &cur)) < 0)
			return ret == LMBOX_ERR_NOTFOUND ? LMBOX_ERR_CORRUPT : ret;
		if (cur == claims[i].seg_id && ctx->cur_seg == 0 &&
		    (ret = lmbox_meta_put_u32(ctx->store, ctx->txn, LMBOX_META_CUR_SEG, 0)) < 0)
			return ret;
	}
	return 0;
}

int lmbox_wseg_blob_dead(struct lmbox_wctx *ctx, uint32_t seg_id, uint64_t offset,
			 uint64_t stored_size)
{
	struct lmbox_wseg *seg;
	uint64_t len = LMBOX_BLOB_HDR_SIZE + stored_size;
	unsigned char key[12];
	MDB_val k = { 12, key };
	int rc, ret;

	lmbox_reclaim_key_encode(key, seg_id, offset);
	rc = mdb_del(ctx->txn, ctx->store->env->dbi_blobs, &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return lmbox_set_mdb_error(ctx->store, rc, "%s: unindexing blob %08X:%llu",
					   ctx->store->dir, seg_id, (unsigned long long)offset);
	}
	ret = lmbox_wseg_get(ctx, seg_id, &seg);
	if (ret == LMBOX_ERR_NOTFOUND) {
		/* the message pointed to a segment we don't know: nothing to
		 * reclaim, and the expunge itself must not fail on it */
		return 0;
	}
	if (ret < 0)
		return ret;
	seg->rec.live_count = seg->rec.live_count > 0 ? seg->rec.live_count - 1 : 0;
	seg->rec.live_bytes = seg->rec.live_bytes >= len ? seg->rec.live_bytes - len : 0;
	/* only a sealed segment can be unlinked: the current one is still
	 * appended to */
	if (seg->rec.live_count == 0 && (seg->rec.flags & LMBOX_SEG_SEALED) != 0) {
		seg->deleted = true;
		return lmbox_add_reclaim(ctx, seg_id, LMBOX_RECLAIM_UNLINK, 0, 0);
	}
	if (offset + len > seg->rec.tail) {
		/* never punch beyond the committed tail: that space is the
		 * next writer's */
		return 0;
	}
	return lmbox_add_reclaim(ctx, seg_id, LMBOX_RECLAIM_PUNCH, offset, len);
}

/* Before the LMDB commit: bodies durable, then segment records and the
 * segment meta into the transaction. */
int lmbox_wseg_flush(struct lmbox_wctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[4], val[LMBOX_SEG_REC_SIZE];
	MDB_val k = { 4, key }, v = { LMBOX_SEG_REC_SIZE, val };
	int rc, ret;

	if (store->opts.fsync != LMBOX_FSYNC_NEVER) {
		for (unsigned int i = 0; i < ctx->sync_fd_count; i++) {
			if (fdatasync(ctx->sync_fds[i]) < 0)
				return lmbox_set_errno(store, errno, "%s: fdatasync of a segment failed",
						       store->seg_dir);
		}
		if (ctx->cur_created) {
			int dfd = open(store->seg_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd < 0 || fsync(dfd) < 0) {
				ret = lmbox_set_errno(store, errno, "fsync(%s) failed", store->seg_dir);
				if (dfd >= 0)
					close(dfd);
				return ret;
			}
			close(dfd);
		}
	}
	for (unsigned int i = 0; i < ctx->seg_count; i++) {
		struct lmbox_wseg *seg = &ctx->segs[i];

		lmbox_put_be32(key, seg->seg_id);
		if (seg->deleted) {
			rc = mdb_del(ctx->txn, store->env->dbi_segs, &k, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		} else {
			lmbox_seg_rec_encode(&seg->rec, val);
			rc = mdb_put(ctx->txn, store->env->dbi_segs, &k, &v, 0);
		}
		if (rc != 0)
			return lmbox_set_mdb_error(store, rc, "%s: writing segment %08X record",
						   store->dir, seg->seg_id);
	}
	if (ctx->meta_dirty) {
		if ((ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_CUR_SEG, ctx->cur_seg)) < 0 ||
		    (ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_NEXT_SEG_ID,
					      ctx->next_seg_id)) < 0)
			return ret;
	}
	return 0;
}

void lmbox_wctx_free(struct lmbox_wctx *ctx)
{
	for (unsigned int i = 0; i < ctx->sync_fd_count; i++)
		close(ctx->sync_fds[i]);
	free(ctx->sync_fds);
	free(ctx->segs);
	free(ctx->reclaims);
	free(ctx->folders);
	memset(ctx, 0, sizeof(*ctx));
	ctx->cur_fd = -1;
}
