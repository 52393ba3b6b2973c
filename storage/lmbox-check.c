/*
 * lmbox-check.c: maintenance.  lmbox_check() walks every record and
 * verifies the invariants the write path keeps (folder counters = sums of
 * their messages, UIDL index = exactly the messages' UIDLs, each blob
 * inside its segment's committed tail with a matching header, segment
 * counters = their live blobs), optionally reading every body.  With
 * LMBOX_CHECK_REPAIR the same walk runs inside a write transaction and
 * rewrites what is derived data (counters, index, reclaim list).  The one
 * record it removes is a message record that cannot be decoded: its raw
 * key and value, and its body if the live-blob index still names it, are
 * first saved under DIR/lost+found (fsynced), then the record is deleted
 * and the counters re-derived without it.  lmbox_compact() moves live blobs out of segments
 * with dead space so whole segments can be unlinked.  lmbox_store_stat()
 * sums it up.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lmbox-private.h"

struct lmbox_check_folder {
	struct lmbox_folder_info info;
	uint32_t count, max_uid;
	uint64_t vsize, psize;
};

struct lmbox_check_seg {
	uint32_t seg_id;
	struct lmbox_seg_rec rec;
	uint32_t live_count;
	uint64_t live_bytes;
	bool bad;
};

struct lmbox_check_ctx {
	struct lmbox_store *store;
	MDB_txn *txn;
	unsigned int flags;
	bool repair;
	lmbox_report_fn *report;
	void *context;
	int problems;

	struct lmbox_check_folder *folders;
	unsigned int folder_count, folder_alloc;
	struct lmbox_check_seg *segs;
	unsigned int seg_count, seg_alloc;
	uint32_t next_folder_id, next_seg_id, cur_seg;
	uint32_t *missing_segs;    /* referenced by messages, without a record */
	unsigned int missing_count, missing_alloc;
	uint64_t blobs_expected;   /* messages with a blob in a known segment */
	bool blobs_bad;
	long long repair_time;     /* names of the files saved to lost+found */
	bool lost_found_made;
};

static void lmbox_problem(struct lmbox_check_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void lmbox_problem(struct lmbox_check_ctx *ctx, const char *fmt, ...)
{
	char line[4096];
	va_list args;

	va_start(args, fmt);
	vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	ctx->problems++;
	if (ctx->report != NULL)
		ctx->report(ctx->context, line);
}

static struct lmbox_check_folder *
lmbox_check_folder_find(struct lmbox_check_ctx *ctx, uint32_t id)
{
	for (unsigned int i = 0; i < ctx->folder_count; i++) {
		if (ctx->folders[i].info.id == id)
			return &ctx->folders[i];
	}
	return NULL;
}

static struct lmbox_check_seg *lmbox_check_seg_find(struct lmbox_check_ctx *ctx, uint32_t id)
{
	for (unsigned int i = 0; i < ctx->seg_count; i++) {
		if (ctx->segs[i].seg_id == id)
			return &ctx->segs[i];
	}
	return NULL;
}

static int lmbox_check_mdb(struct lmbox_check_ctx *ctx, int rc, const char *what)
{
	return lmbox_set_mdb_error(ctx->store, rc, "%s: %s", ctx->store->dir, what);
}

/* Meta values, folders and names. */
static int lmbox_check_folders(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info info;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t id;
	int rc;

	if (lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_NEXT_FOLDER_ID, &ctx->next_folder_id) < 0 ||
	    lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_NEXT_SEG_ID, &ctx->next_seg_id) < 0 ||
	    lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_CUR_SEG, &ctx->cur_seg) < 0) {
		lmbox_problem(ctx, "%s: store meta counters are missing or malformed", store->mdb_path);
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: meta missing", store->mdb_path);
	}
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_folders, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmbox_check_folder *f;

		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0 ||
		    lmbox_folder_decode(v.mv_data, v.mv_size, &info) < 0 || info.id != id) {
			lmbox_problem(ctx, "%s: a folder record is malformed", store->mdb_path);
			continue;
		}
		if (id >= ctx->next_folder_id)
			lmbox_problem(ctx, "folder %u (%s): id not below next_folder_id %u",
				      id, info.name, ctx->next_folder_id);
		if (lmbox_grow_array(&ctx->folders, &ctx->folder_alloc, ctx->folder_count + 1,
				     sizeof(*ctx->folders)) < 0) {
			mdb_cursor_close(cur);
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
		}
		f = &ctx->folders[ctx->folder_count++];
		memset(f, 0, sizeof(*f));
		f->info = info;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "reading folders");
	for (unsigned int i = 0; i < ctx->folder_count; i++) {
		if (lmbox_folder_load_name(store, ctx->txn, ctx->folders[i].info.name, &info) < 0 ||
		    info.id != ctx->folders[i].info.id) {
			lmbox_problem(ctx, "folder %u (%s): its name does not lead to it",
				      ctx->folders[i].info.id, ctx->folders[i].info.name);
		}
	}
	return 0;
}

static int lmbox_check_segs_load(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t id;
	int rc;

	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_segs, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmbox_check_seg *s;

		if (lmbox_grow_array(&ctx->segs, &ctx->seg_alloc, ctx->seg_count + 1,
				     sizeof(*ctx->segs)) < 0) {
			mdb_cursor_close(cur);
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
		}
		s = &ctx->segs[ctx->seg_count];
		memset(s, 0, sizeof(*s));
		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0 || id == 0 ||
		    lmbox_seg_rec_decode(v.mv_data, v.mv_size, &s->rec) < 0) {
			lmbox_problem(ctx, "%s: a segment record is malformed", store->mdb_path);
			continue;
		}
		s->seg_id = id;
		ctx->seg_count++;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "reading segments");
	return 0;
}

static void lmbox_check_body(struct lmbox_check_ctx *ctx, const struct lmbox_msg_meta *meta)
{
	struct lmbox_body *body;
	unsigned char buf[LMBOX_IO_CHUNK];
	ssize_t n;
	int ret;

	if ((ret = lmbox_body_open(ctx->store, meta, &body)) == 0) {
		while ((n = lmbox_body_read(body, buf, sizeof(buf))) > 0) ;
		ret = (int)n;
		lmbox_body_close(&body);
	}
	if (ret < 0)
		lmbox_problem(ctx, "%s", lmbox_store_errmsg(ctx->store));
}

static int lmbox_check_uidl_entry(struct lmbox_check_ctx *ctx, const struct lmbox_msg_meta *meta)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[4 + LMBOX_MAX_UIDL_LEN], uidbuf[4];
	MDB_val k, v = { 4, uidbuf };
	MDB_cursor *cur;
	int rc;

	k.mv_data = key;
	k.mv_size = lmbox_uidl_key_encode(key, meta->folder_id, meta->uidl);
	lmbox_put_be32(uidbuf, meta->uid);
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_uidls, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH);
	mdb_cursor_close(cur);
	if (rc == 0)
		return 0;
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "UIDL index lookup");
	lmbox_problem(ctx, "folder %u uid %u: UIDL \"%s\" missing from the index%s",
		      meta->folder_id, meta->uid, meta->uidl, ctx->repair ? " (re-added)" : "");
	if (ctx->repair) {
		k.mv_data = key;
		v.mv_data = uidbuf;
		v.mv_size = 4;
		if ((rc = mdb_put(ctx->txn, store->env->dbi_uidls, &k, &v, MDB_NODUPDATA)) != 0 &&
		    rc != MDB_KEYEXIST)
			return lmbox_check_mdb(ctx, rc, "repairing UIDL index");
	}
	return 0;
}

/* The live-blob index entry of a message: present, same owner and size. */
static void lmbox_check_blob_index(struct lmbox_check_ctx *ctx, const struct lmbox_msg_meta *meta)
{
	struct lmbox_blob_rec rec;
	unsigned char key[12];
	MDB_val k = { 12, key }, v;

	lmbox_reclaim_key_encode(key, meta->seg_id, meta->seg_offset);
	if (mdb_get(ctx->txn, ctx->store->env->dbi_blobs, &k, &v) == 0 &&
	    lmbox_blob_rec_decode(v.mv_data, v.mv_size, &rec) == 0 &&
	    rec.folder_id == meta->folder_id && rec.uid == meta->uid &&
	    rec.len == LMBOX_BLOB_HDR_SIZE + meta->stored_size)
		return;
	lmbox_problem(ctx, "folder %u uid %u: live-blob index entry of %08X:%llu is missing "
		      "or wrong%s", meta->folder_id, meta->uid, meta->seg_id,
		      (unsigned long long)meta->seg_offset, ctx->repair ? " (index rebuilt)" : "");
	ctx->blobs_bad = true;
}

int lmbox_blobs_rebuild(struct lmbox_store *store, MDB_txn *txn)
{
	struct lmbox_msg_meta meta;
	struct lmbox_blob_rec rec;
	unsigned char key[12], val[LMBOX_BLOB_REC_SIZE];
	MDB_cursor *cur;
	MDB_val k, v, bk = { 12, key }, bv = { LMBOX_BLOB_REC_SIZE, val };
	int rc;

	if ((rc = mdb_drop(txn, store->env->dbi_blobs, 0)) != 0 ||
	    (rc = mdb_cursor_open(txn, store->env->dbi_msgs, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: rebuilding blob index", store->dir);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &rec.folder_id, &rec.uid) < 0 ||
		    lmbox_msg_decode(v.mv_data, v.mv_size, &meta) < 0)
			continue;
		rec.len = LMBOX_BLOB_HDR_SIZE + meta.stored_size;
		lmbox_reclaim_key_encode(key, meta.seg_id, meta.seg_offset);
		lmbox_blob_rec_encode(&rec, val);
		if ((rc = mdb_put(txn, store->env->dbi_blobs, &bk, &bv, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_set_mdb_error(store, rc, "%s: rebuilding blob index", store->dir);
	return 0;
}

/* Index entries without a message. */
static int lmbox_check_blobs(struct lmbox_check_ctx *ctx)
{
	MDB_stat st;
	int rc;

	if ((rc = mdb_stat(ctx->txn, ctx->store->env->dbi_blobs, &st)) != 0)
		return lmbox_check_mdb(ctx, rc, "blob index stat");
	if (st.ms_entries != ctx->blobs_expected) {
		lmbox_problem(ctx, "%s: live-blob index has %llu entries for %llu blobs%s",
			      ctx->store->mdb_path, (unsigned long long)st.ms_entries,
			      (unsigned long long)ctx->blobs_expected,
			      ctx->repair ? " (index rebuilt)" : "");
		ctx->blobs_bad = true;
	}
	if (ctx->blobs_bad && ctx->repair)
		return lmbox_blobs_rebuild(ctx->store, ctx->txn);
	return 0;
}

static void lmbox_check_blob(struct lmbox_check_ctx *ctx, const struct lmbox_msg_meta *meta,
			     struct lmbox_check_seg *seg)
{
	struct lmbox_blob_hdr hdr;
	unsigned char hbuf[LMBOX_BLOB_HDR_SIZE];
	int fd;

	if (seg == NULL) {
		lmbox_problem(ctx, "folder %u uid %u: body in segment %08X which has no record",
			      meta->folder_id, meta->uid, meta->seg_id);
		if (lmbox_grow_array(&ctx->missing_segs, &ctx->missing_alloc,
				     ctx->missing_count + 1, sizeof(uint32_t)) == 0)
			ctx->missing_segs[ctx->missing_count++] = meta->seg_id;
		return;
	}
	seg->live_count++;
	seg->live_bytes += LMBOX_BLOB_HDR_SIZE + meta->stored_size;
	ctx->blobs_expected++;
	lmbox_check_blob_index(ctx, meta);
	if (meta->seg_offset + LMBOX_BLOB_HDR_SIZE + meta->stored_size > seg->rec.tail) {
		lmbox_problem(ctx, "folder %u uid %u: blob at %08X:%llu+%llu is beyond the "
			      "segment's committed tail %llu", meta->folder_id, meta->uid,
			      meta->seg_id, (unsigned long long)meta->seg_offset,
			      (unsigned long long)meta->stored_size,
			      (unsigned long long)seg->rec.tail);
		return;
	}
	if (seg->bad)
		return;
	if (lmbox_seg_open_read(ctx->store, meta->seg_id, &fd) < 0) {
		lmbox_problem(ctx, "folder %u uid %u: %s", meta->folder_id, meta->uid,
			      lmbox_store_errmsg(ctx->store));
		return;
	}
	if (lmbox_pread_full(ctx->store, fd, hbuf, sizeof(hbuf), meta->seg_offset, "segment") < 0 ||
	    lmbox_blob_hdr_decode(hbuf, sizeof(hbuf), &hdr) < 0 ||
	    hdr.codec != meta->codec || hdr.phys_size != meta->phys_size ||
	    hdr.stored_size != meta->stored_size || hdr.checksum != meta->checksum) {
		lmbox_problem(ctx, "folder %u uid %u: blob header at %08X:%llu is bad or does "
			      "not match the record", meta->folder_id, meta->uid, meta->seg_id,
			      (unsigned long long)meta->seg_offset);
	} else if ((ctx->flags & LMBOX_CHECK_BODIES) != 0) {
		lmbox_check_body(ctx, meta);
	}
	close(fd);
}

/* ---------------------------------------------------------- lost+found */

#define LMBOX_LOST_FOUND "lost+found"

static int lmbox_lf_write_all(int fd, const void *data, size_t size)
{
	const unsigned char *p = data;

	while (size > 0) {
		ssize_t n = write(fd, p, size);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

static int lmbox_lf_fsync_path(const char *path)
{
	int fd, ret;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

/* DIR/lost+found, 0700; a new one is made durable in DIR. */
static int lmbox_lf_dir(struct lmbox_check_ctx *ctx, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", ctx->store->dir, LMBOX_LOST_FOUND);
	if (ctx->lost_found_made)
		return 0;
	if (mkdir(path, 0700) < 0) {
		if (errno != EEXIST)
			return -1;
	} else if (lmbox_lf_fsync_path(ctx->store->dir) < 0) {
		return -1;
	}
	ctx->lost_found_made = true;
	return 0;
}

/* Finish a file of lost+found: fsync and close; on failure unlink it. */
static int lmbox_lf_finish(int fd, const char *path, int ret)
{
	int saved;

	if (ret == 0 && fsync(fd) < 0)
		ret = -1;
	saved = errno;
	if (close(fd) < 0 && ret == 0) {
		ret = -1;
		saved = errno;
	}
	if (ret < 0) {
		(void)unlink(path);
		errno = saved;
	}
	return ret;
}

/* Copy len bytes of a segment from offset into path (the blob as stored). */
static int lmbox_lf_copy_raw(struct lmbox_check_ctx *ctx, int seg_fd, uint64_t offset,
			     uint64_t len, const char *path, char *why, size_t why_size)
{
	unsigned char buf[LMBOX_IO_CHUNK];
	int fd, ret = 0;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		snprintf(why, why_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (len > 0 && ret == 0) {
		size_t want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		ssize_t n = pread(seg_fd, buf, want, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* a short segment: save what there is */
		ret = lmbox_lf_write_all(fd, buf, (size_t)n);
		offset += (uint64_t)n;
		len -= (uint64_t)n;
	}
	if (lmbox_lf_finish(fd, path, ret) < 0) {
		snprintf(why, why_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	(void)ctx;
	return 0;
}

/* The body of a message whose record is gone, from its blob header, into
 * path: decompressed and checksum-verified.  1 if the blob cannot be
 * decoded (the caller copies it raw), -1 if the file cannot be written. */
static int lmbox_lf_save_eml(struct lmbox_check_ctx *ctx, const struct lmbox_msg_meta *meta,
			     const char *path, char *why, size_t why_size)
{
	unsigned char buf[LMBOX_IO_CHUNK];
	struct lmbox_body *body;
	ssize_t n;
	int fd, ret = 0;

	if (lmbox_body_open(ctx->store, meta, &body) < 0)
		return 1;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		snprintf(why, why_size, "%s: %s", path, strerror(errno));
		lmbox_body_close(&body);
		return -1;
	}
	while ((n = lmbox_body_read(body, buf, sizeof(buf))) > 0) {
		if (lmbox_lf_write_all(fd, buf, (size_t)n) < 0) {
			ret = -1;
			break;
		}
	}
	lmbox_body_close(&body);
	if (ret == 0 && n < 0) {
		(void)close(fd);
		(void)unlink(path);
		return 1;
	}
	if (lmbox_lf_finish(fd, path, ret) < 0) {
		snprintf(why, why_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The live-blob index entry owned by (fid, uid), if any. */
static int lmbox_lf_find_blob(struct lmbox_check_ctx *ctx, uint32_t fid, uint32_t uid,
			      uint32_t *seg_id_r, uint64_t *offset_r, uint64_t *len_r)
{
	struct lmbox_blob_rec rec;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(ctx->txn, ctx->store->env->dbi_blobs, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_blob_rec_decode(v.mv_data, v.mv_size, &rec) == 0 &&
		    rec.folder_id == fid && rec.uid == uid &&
		    lmbox_reclaim_key_decode(k.mv_data, k.mv_size, seg_id_r, offset_r) == 0) {
			*len_r = rec.len;
			mdb_cursor_close(cur);
			return 1;
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "reading live-blob index");
	return 0;
}

/* Save the body blob of a malformed record to base.eml (decoded) or
 * base.blob (as stored), and take it out of the live-blob index and its
 * segment's live counters: the store keeps no message for it.  desc says
 * where it went.  1 = a file could not be written (desc says why): nothing
 * may be deleted; <0 = an LMDB error (the store's error is set). */
static int lmbox_lf_save_body(struct lmbox_check_ctx *ctx, uint32_t fid, uint32_t uid,
			      const char *base, char *desc, size_t desc_size)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_check_seg *seg;
	struct lmbox_blob_hdr hdr;
	struct lmbox_msg_meta meta;
	unsigned char hbuf[LMBOX_BLOB_HDR_SIZE], bkey[12];
	MDB_val bk = { 12, bkey };
	char path[4300], why[4400];
	uint64_t offset = 0, len = 0;
	uint32_t seg_id = 0;
	int fd, ret, rc;

	if ((ret = lmbox_lf_find_blob(ctx, fid, uid, &seg_id, &offset, &len)) < 0)
		return ret;
	if (ret == 0) {
		snprintf(desc, desc_size, "no body: the live-blob index names none");
		return 0;
	}
	if (lmbox_seg_open_read(store, seg_id, &fd) < 0) {
		snprintf(desc, desc_size, "body at %08X:%llu not saved: %s", seg_id,
			 (unsigned long long)offset, lmbox_store_errmsg(store));
	} else {
		ret = 1;
		if (lmbox_pread_full(store, fd, hbuf, sizeof(hbuf), offset, "segment") == 0 &&
		    lmbox_blob_hdr_decode(hbuf, sizeof(hbuf), &hdr) == 0 &&
		    len == LMBOX_BLOB_HDR_SIZE + hdr.stored_size) {
			memset(&meta, 0, sizeof(meta));
			meta.folder_id = fid;
			meta.uid = uid;
			meta.codec = hdr.codec;
			meta.phys_size = hdr.phys_size;
			meta.stored_size = hdr.stored_size;
			meta.checksum = hdr.checksum;
			meta.seg_id = seg_id;
			meta.seg_offset = offset;
			snprintf(path, sizeof(path), "%s.eml", base);
			ret = lmbox_lf_save_eml(ctx, &meta, path, why, sizeof(why));
		}
		if (ret == 1) {
			/* header or data damaged: keep the bytes as they are */
			snprintf(path, sizeof(path), "%s.blob", base);
			ret = lmbox_lf_copy_raw(ctx, fd, offset, len, path, why, sizeof(why));
		}
		close(fd);
		if (ret < 0) {
			snprintf(desc, desc_size, "%s", why);
			return 1;
		}
		snprintf(desc, desc_size, "body (%08X:%llu) to %s", seg_id,
			 (unsigned long long)offset, path);
	}
	/* no message owns the blob any more: dead space, which compaction
	 * gives back like any other */
	lmbox_reclaim_key_encode(bkey, seg_id, offset);
	if ((rc = mdb_del(ctx->txn, store->env->dbi_blobs, &bk, NULL)) != 0)
		return lmbox_check_mdb(ctx, rc, "removing live-blob index entry");
	if ((seg = lmbox_check_seg_find(ctx, seg_id)) != NULL &&
	    seg->rec.live_count > 0 && seg->rec.live_bytes >= len) {
		unsigned char key[4], val[LMBOX_SEG_REC_SIZE];
		MDB_val k = { 4, key }, v = { LMBOX_SEG_REC_SIZE, val };

		seg->rec.live_count--;
		seg->rec.live_bytes -= len;
		lmbox_put_be32(key, seg_id);
		lmbox_seg_rec_encode(&seg->rec, val);
		if ((rc = mdb_put(ctx->txn, store->env->dbi_segs, &k, &v, 0)) != 0)
			return lmbox_check_mdb(ctx, rc, "updating segment record");
	}
	return 0;
}

/* Repair of a message record lmbox_msg_decode() rejects: save its key and
 * value as they are (base.rec: the 8-byte key, then the value) and its
 * body, fsync both and lost+found, then delete the record (cur is on it).
 * The folder's counters and the UIDL index are re-derived by the rest of
 * the walk, which no longer sees it.  Returns 1 if moved aside, 0 if it
 * could not be (why in desc: the record stays), <0 on an LMDB error. */
static int lmbox_check_move_aside(struct lmbox_check_ctx *ctx, MDB_cursor *cur,
				  const MDB_val *k, const MDB_val *v, uint32_t fid,
				  uint32_t uid, char *desc, size_t desc_size)
{
	char dir[4096], base[4200], path[4300], body_desc[4400];
	int fd = -1, ret, rc;

	if (lmbox_lf_dir(ctx, dir, sizeof(dir)) < 0) {
		snprintf(desc, desc_size, "cannot make %s: %s", dir, strerror(errno));
		return 0;
	}
	for (unsigned int n = 0; n < 100 && fd < 0; n++) {
		if (n == 0)
			snprintf(base, sizeof(base), "%s/msg-%u-%u-%lld", dir, fid, uid,
				 ctx->repair_time);
		else
			snprintf(base, sizeof(base), "%s/msg-%u-%u-%lld.%u", dir, fid, uid,
				 ctx->repair_time, n);
		snprintf(path, sizeof(path), "%s.rec", base);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		snprintf(desc, desc_size, "cannot create %s: %s", path, strerror(errno));
		return 0;
	}
	ret = lmbox_lf_write_all(fd, k->mv_data, k->mv_size);
	if (ret == 0)
		ret = lmbox_lf_write_all(fd, v->mv_data, v->mv_size);
	if (lmbox_lf_finish(fd, path, ret) < 0) {
		snprintf(desc, desc_size, "cannot write %s: %s", path, strerror(errno));
		return 0;
	}
	if ((ret = lmbox_lf_save_body(ctx, fid, uid, base, body_desc, sizeof(body_desc))) != 0) {
		if (ret < 0)
			return ret;
		(void)unlink(path);
		snprintf(desc, desc_size, "cannot save its body: %s", body_desc);
		return 0;
	}
	if (lmbox_lf_fsync_path(dir) < 0) {
		snprintf(desc, desc_size, "cannot fsync %s: %s", dir, strerror(errno));
		return 0;
	}
	if ((rc = mdb_cursor_del(cur, 0)) != 0)
		return lmbox_check_mdb(ctx, rc, "deleting malformed message record");
	snprintf(desc, desc_size, "record (%zu+%zu bytes) to %s, %s", k->mv_size, v->mv_size,
		 path, body_desc);
	return 1;
}

/* Every message: record, blob, UIDL index entry; sums per folder/segment. */
static int lmbox_check_msgs(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_msg_meta meta;
	struct lmbox_pending_scan pending = { NULL, UINT64_MAX };
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t fid, uid;
	int rc, ret = 0;

	/* a pending expunge's message keeps its records, blob and UIDL
	 * entry until the purge, but its folder's counters no longer count
	 * it.  (Repair runs after the purge: nothing is pending then.) */
	if ((ret = lmbox_pending_scan_seek(store, ctx->txn, &pending, 0, 0)) < 0)
		return ret;
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_msgs, &cur)) != 0) {
		lmbox_pending_scan_close(&pending);
		return lmbox_check_mdb(ctx, rc, "cursor");
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && ret == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct lmbox_check_folder *f;
		int is_pending = 0;

		if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &fid, &uid) < 0) {
			lmbox_problem(ctx, "%s: a message key is malformed", store->mdb_path);
			continue;
		}
		if (lmbox_msg_decode(v.mv_data, v.mv_size, &meta) < 0) {
			char desc[9000];
			int moved;

			if (!ctx->repair) {
				lmbox_problem(ctx, "folder %u uid %u: message record is malformed",
					      fid, uid);
				continue;
			}
			if ((moved = lmbox_check_move_aside(ctx, cur, &k, &v, fid, uid, desc,
							    sizeof(desc))) < 0) {
				ret = moved;
				break;
			}
			lmbox_problem(ctx, "folder %u uid %u: message record is malformed (%s: %s)",
				      fid, uid, moved ? "moved aside" : "NOT moved aside", desc);
			continue;
		}
		meta.folder_id = fid;
		meta.uid = uid;
		if ((f = lmbox_check_folder_find(ctx, fid)) == NULL) {
			lmbox_problem(ctx, "folder %u uid %u: message of a folder that does not exist",
				      fid, uid);
			continue;
		}
		if (pending.next != UINT64_MAX &&
		    (is_pending = lmbox_pending_scan_has(store, &pending, fid, uid)) < 0) {
			ret = is_pending;
			break;
		}
		if (is_pending == 0) {
			f->count++;
			f->vsize += meta.virt_size;
			f->psize += meta.phys_size;
		}
		if (uid > f->max_uid)
			f->max_uid = uid;
		lmbox_check_blob(ctx, &meta, lmbox_check_seg_find(ctx, meta.seg_id));
		ret = lmbox_check_uidl_entry(ctx, &meta);
	}
	mdb_cursor_close(cur);
	lmbox_pending_scan_close(&pending);
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = lmbox_check_mdb(ctx, rc, "reading messages");
	return ret;
}

/* Index entries that lead to no message with that UIDL. */
static int lmbox_check_uidls(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_msg_meta meta;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t uid;
	int rc;

	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_uidls, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char uidl[LMBOX_MAX_UIDL_LEN + 1];
		uint32_t fid;
		bool ok = false;

		if (k.mv_size > 4 && k.mv_size <= 4 + LMBOX_MAX_UIDL_LEN &&
		    lmbox_u32_key_decode(v.mv_data, v.mv_size, &uid) == 0) {
			fid = lmbox_get_be32(k.mv_data);
			memcpy(uidl, (const char *)k.mv_data + 4, k.mv_size - 4);
			uidl[k.mv_size - 4] = '\0';
			ok = lmbox_msg_load(store, ctx->txn, fid, uid, &meta) == 0 &&
				strcmp(meta.uidl, uidl) == 0;
		}
		if (ok)
			continue;
		lmbox_problem(ctx, "UIDL index entry leads to no such message%s",
			      ctx->repair ? " (removed)" : "");
		if (ctx->repair && (rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "checking UIDL index");
	return 0;
}

static int lmbox_check_counters(struct lmbox_check_ctx *ctx)
{
	for (unsigned int i = 0; i < ctx->folder_count; i++) {
		struct lmbox_check_folder *f = &ctx->folders[i];
		struct lmbox_folder_info *info = &f->info;
		bool fix = false;
		int ret;

		if (info->count != f->count || info->vsize_total != f->vsize ||
		    info->psize_total != f->psize) {
			lmbox_problem(ctx, "folder %u (%s): counters say %u messages %llu/%llu bytes, "
				      "found %u messages %llu/%llu bytes%s", info->id, info->name,
				      info->count, (unsigned long long)info->vsize_total,
				      (unsigned long long)info->psize_total, f->count,
				      (unsigned long long)f->vsize, (unsigned long long)f->psize,
				      ctx->repair ? " (fixed)" : "");
			info->count = f->count;
			info->vsize_total = f->vsize;
			info->psize_total = f->psize;
			fix = true;
		}
		if (f->max_uid >= info->next_uid) {
			lmbox_problem(ctx, "folder %u (%s): next_uid %u is not above its highest "
				      "uid %u%s", info->id, info->name, info->next_uid, f->max_uid,
				      ctx->repair ? " (fixed)" : "");
			info->next_uid = f->max_uid + 1;
			fix = true;
		}
		if (fix && ctx->repair) {
			info->change_counter++;
			if ((ret = lmbox_folder_save(ctx->store, ctx->txn, info)) < 0)
				return ret;
		}
	}
	return 0;
}

/* Segment files without a record: left by a crash between the commit that
 * dropped the record and the unlink (then a reclaim record is pending) or
 * by damage.  Ids at or past next_seg_id may be a writer's new segment. */
static void lmbox_check_orphan_segments(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct dirent *d;
	DIR *dir;

	if ((dir = opendir(store->seg_dir)) == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		unsigned char key[12];
		MDB_val k = { 12, key }, v;
		uint32_t id;
		char *end;

		if (strlen(d->d_name) != 8 || strspn(d->d_name, "0123456789ABCDEF") != 8)
			continue;
		id = (uint32_t)strtoul(d->d_name, &end, 16);
		if (id == 0 || id >= ctx->next_seg_id || lmbox_check_seg_find(ctx, id) != NULL)
			continue;
		lmbox_reclaim_key_encode(key, id, 0);
		if (mdb_get(ctx->txn, store->env->dbi_reclaim, &k, &v) == 0)
			continue; /* its unlink is pending */
		bool referenced = false;

		for (unsigned int i = 0; i < ctx->missing_count; i++)
			referenced = referenced || ctx->missing_segs[i] == id;
		/* never remove bodies some message still points to */
		lmbox_problem(ctx, "%s/%s: segment file without a record%s", store->seg_dir,
			      d->d_name, ctx->repair && !referenced ? " (removed)" : "");
		if (ctx->repair && !referenced)
			(void)unlinkat(dirfd(dir), d->d_name, 0);
	}
	closedir(dir);
}

static int lmbox_check_segments(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	char path[4096];

	for (unsigned int i = 0; i < ctx->seg_count; i++) {
		struct lmbox_check_seg *s = &ctx->segs[i];
		struct lmbox_seg_hdr hdr;
		unsigned char buf[LMBOX_SEG_HDR_SIZE];
		struct stat st;
		int fd;

		lmbox_seg_path(store, s->seg_id, path, sizeof(path));
		if (s->live_count != s->rec.live_count || s->live_bytes != s->rec.live_bytes) {
			lmbox_problem(ctx, "%s: record says %u live blobs/%llu bytes, found %u/%llu%s",
				      path, s->rec.live_count, (unsigned long long)s->rec.live_bytes,
				      s->live_count, (unsigned long long)s->live_bytes,
				      ctx->repair ? " (fixed)" : "");
			if (ctx->repair) {
				unsigned char key[4], val[LMBOX_SEG_REC_SIZE];
				MDB_val k = { 4, key }, v = { LMBOX_SEG_REC_SIZE, val };
				int rc;

				s->rec.live_count = s->live_count;
				s->rec.live_bytes = s->live_bytes;
				lmbox_put_be32(key, s->seg_id);
				lmbox_seg_rec_encode(&s->rec, val);
				if ((rc = mdb_put(ctx->txn, store->env->dbi_segs, &k, &v, 0)) != 0)
					return lmbox_check_mdb(ctx, rc, "repairing segment record");
			}
		}
		if (s->seg_id >= ctx->next_seg_id)
			lmbox_problem(ctx, "%s: id not below next_seg_id %08X", path, ctx->next_seg_id);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			/* an open segment (the current one or another that
			 * concurrent writers append to) is sealed: appends
			 * go to a new one */
			bool missing_cur = errno == ENOENT &&
				(s->seg_id == ctx->cur_seg ||
				 (s->rec.flags & LMBOX_SEG_SEALED) == 0);

			lmbox_problem(ctx, "%s: cannot open: %s%s", path, strerror(errno),
				      missing_cur && ctx->repair ?
				      " (open segment: appends go to a new one)" : "");
			if (missing_cur && ctx->repair) {
				/* without this every append fails; the mail
				 * that was in it is gone either way */
				unsigned char key[4], val[LMBOX_SEG_REC_SIZE];
				MDB_val k = { 4, key }, v = { LMBOX_SEG_REC_SIZE, val };
				int rc, ret;

				s->rec.flags |= LMBOX_SEG_SEALED;
				lmbox_put_be32(key, s->seg_id);
				lmbox_seg_rec_encode(&s->rec, val);
				if ((rc = mdb_put(ctx->txn, store->env->dbi_segs, &k, &v, 0)) != 0)
					return lmbox_check_mdb(ctx, rc, "sealing missing segment");
				if (s->seg_id == ctx->cur_seg &&
				    (ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_CUR_SEG, 0)) < 0)
					return ret;
			}
			continue;
		}
		if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < s->rec.tail) {
			lmbox_problem(ctx, "%s: file is shorter than its committed tail %llu",
				      path, (unsigned long long)s->rec.tail);
		}
		if (lmbox_pread_full(store, fd, buf, sizeof(buf), 0, path) < 0 ||
		    lmbox_seg_hdr_decode(buf, sizeof(buf), &hdr) < 0 || hdr.seg_id != s->seg_id)
			lmbox_problem(ctx, "%s: bad segment header", path);
		close(fd);
	}
	lmbox_check_orphan_segments(ctx);
	if (ctx->cur_seg != 0 && lmbox_check_seg_find(ctx, ctx->cur_seg) == NULL)
		lmbox_problem(ctx, "%s: current segment %08X has no record", store->mdb_path,
			      ctx->cur_seg);
	return 0;
}

/* Pending expunges: well-formed, of messages that exist.  (A read-only
 * check only: repair and every other write apply them first.) */
static int lmbox_check_pending(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_msg_meta meta;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t fid, uid;
	int rc;

	if (!store->env->has_pending || !lmbox_pending_nonempty(store, ctx->txn))
		return 0;
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_pending, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &fid, &uid) < 0 ||
		    lmbox_pending_rec_decode(v.mv_data, v.mv_size) < 0) {
			lmbox_problem(ctx, "%s: a pending expunge record is malformed",
				      store->mdb_path);
			continue;
		}
		if (lmbox_msg_load(store, ctx->txn, fid, uid, &meta) == LMBOX_ERR_NOTFOUND)
			lmbox_problem(ctx, "folder %u uid %u: pending expunge of a message "
				      "that does not exist", fid, uid);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "checking pending expunges");
	return 0;
}

static int lmbox_check_reclaim(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_reclaim_rec rec;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t seg_id;
	uint64_t offset;
	int rc;

	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_reclaim, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_reclaim_key_decode(k.mv_data, k.mv_size, &seg_id, &offset) == 0 &&
		    lmbox_reclaim_rec_decode(v.mv_data, v.mv_size, &rec) == 0)
			continue;
		lmbox_problem(ctx, "%s: a reclaim record is malformed%s", store->mdb_path,
			      ctx->repair ? " (removed)" : "");
		if (ctx->repair && (rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return lmbox_check_mdb(ctx, rc, "checking reclaim list");
	return 0;
}

/* The file of dictionary id against the good bytes of its record (dict,
 * or NULL when the record is damaged too).  Returns 1 when the file is
 * good (*fbuf_r, *fdict_r, *flen_r: its bytes), 0 when not (reported,
 * and rewritten from dict by repair), < 0 on an error. */
static int lmbox_check_dict_file(struct lmbox_check_ctx *ctx, uint32_t id,
				 const unsigned char *dict, size_t len, unsigned char **fbuf_r,
				 const unsigned char **fdict_r, size_t *flen_r)
{
	struct lmbox_store *store = ctx->store;
	char why[LMBOX_ERRMSG_SIZE];
	int ret;

	ret = lmbox_sdict_file_read(store, id, fbuf_r, fdict_r, flen_r);
	if (ret == 0 && (dict == NULL || (*flen_r == len && memcmp(*fdict_r, dict, len) == 0)))
		return 1;
	if (ret == 0) {
		snprintf(why, sizeof(why), "the file of store dictionary %08lX differs from "
			 "its record", (unsigned long)id);
		free(*fbuf_r);
		*fbuf_r = NULL;
	} else if (ret == LMBOX_ERR_NOTFOUND || ret == LMBOX_ERR_CORRUPT) {
		snprintf(why, sizeof(why), "%s", lmbox_store_errmsg(store));
	} else {
		return ret;
	}
	if (dict == NULL)
		return 0;
	lmbox_problem(ctx, "%s%s", why, ctx->repair ? " (rewritten from its record)" : "");
	if (ctx->repair && (ret = lmbox_sdict_file_write(store, id, dict, len)) < 0)
		return ret;
	return 0;
}

/* Store dictionaries: each record good (a damaged copy is rewritten from
 * the other by repair, a record with both copies damaged from a good
 * file), each with its file DIR/dict/XXXXXXXX.dict (repair writes a
 * missing or damaged one from the record), and meta "dict" names one that
 * is good. */
/* --repair: (re)write store dictionary id's record from good bytes. */
static int lmbox_check_put_dict(struct lmbox_check_ctx *ctx, uint32_t id,
				const unsigned char *dict, size_t len)
{
	unsigned char key[4];
	MDB_val k, v;
	int rc;

	lmbox_put_be32(key, id);
	k.mv_size = sizeof(key);
	k.mv_data = key;
	v.mv_size = lmbox_dict_rec_size(len);
	rc = mdb_put(ctx->txn, ctx->store->env->dbi_dicts, &k, &v, MDB_RESERVE);
	if (rc == 0)
		lmbox_dict_rec_encode(dict, len, v.mv_data);
	return rc;
}

static int lmbox_check_dicts(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	const unsigned char *dict, *fdict;
	unsigned char *copy, *fbuf;
	uint32_t *from_file = NULL;
	unsigned int from_file_count = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t id, cur_id;
	size_t len, flen;
	bool damaged, cur_good = false, cur_seen = false;
	int rc, ret;

	if (!store->env->has_dicts)
		return 0;
	ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_DICT, &cur_id);
	if (ret < 0 && ret != LMBOX_ERR_NOTFOUND)
		return ret;
	if (ret == LMBOX_ERR_NOTFOUND)
		cur_id = 0;
	ret = 0;
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_dicts, &cur)) != 0)
		return lmbox_check_mdb(ctx, rc, "cursor");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0) {
			lmbox_problem(ctx, "%s: a store dictionary key is malformed",
				      store->mdb_path);
			continue;
		}
		if (id == cur_id)
			cur_seen = true;
		if (lmbox_dict_rec_decode(v.mv_data, v.mv_size, id, &dict, &len, &damaged) < 0) {
			ret = lmbox_check_dict_file(ctx, id, NULL, 0, &fbuf, &fdict, &flen);
			if (ret < 0)
				break;
			if (ret == 0) {
				lmbox_problem(ctx, "%s: store dictionary %08lX is damaged and so is "
					      "its file; messages compressed with it cannot be "
					      "read: restore the store from a backup",
					      store->mdb_path, (unsigned long)id);
				continue;
			}
			free(fbuf);
			if (id == cur_id)
				cur_good = true;
			lmbox_problem(ctx, "%s: both copies of store dictionary %08lX are "
				      "damaged; its file is good%s", store->mdb_path,
				      (unsigned long)id,
				      ctx->repair ? " (record rewritten from it)" : "");
			if (ctx->repair) {
				uint32_t *n = realloc(from_file, (from_file_count + 1) *
						      sizeof(*from_file));
				if (n == NULL) {
					ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
					break;
				}
				from_file = n;
				from_file[from_file_count++] = id;
			}
			continue;
		}
		if (id == cur_id)
			cur_good = true;
		if ((copy = malloc(len)) == NULL) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			break;
		}
		/* the map may move under a repair's writes: a copy */
		memcpy(copy, dict, len);
		ret = lmbox_check_dict_file(ctx, id, copy, len, &fbuf, &fdict, &flen);
		if (ret > 0)
			free(fbuf);
		if (ret < 0) {
			free(copy);
			break;
		}
		ret = 0;
		if (!damaged) {
			free(copy);
			continue;
		}
		lmbox_problem(ctx, "%s: one copy of store dictionary %08lX is damaged%s",
			      store->mdb_path, (unsigned long)id,
			      ctx->repair ? " (rewritten from the other)" : "");
		if (!ctx->repair) {
			free(copy);
			continue;
		}
		v.mv_size = lmbox_dict_rec_size(len);
		rc = mdb_cursor_put(cur, &k, &v, MDB_CURRENT | MDB_RESERVE);
		if (rc == 0)
			lmbox_dict_rec_encode(copy, len, v.mv_data);
		free(copy);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (ret < 0) {
		free(from_file);
		return ret;
	}
	if (rc != MDB_NOTFOUND) {
		free(from_file);
		return lmbox_check_mdb(ctx, rc, "checking store dictionaries");
	}
	/* records whose both copies were damaged, from their good files */
	for (unsigned int i = 0; i < from_file_count; i++) {
		id = from_file[i];
		if ((ret = lmbox_sdict_file_read(store, id, &fbuf, &fdict, &flen)) < 0)
			break;
		rc = lmbox_check_put_dict(ctx, id, fdict, flen);
		free(fbuf);
		if (rc != 0) {
			free(from_file);
			return lmbox_check_mdb(ctx, rc, "rewriting a store dictionary");
		}
	}
	free(from_file);
	if (ret < 0)
		return ret;
	if (cur_id != 0 && !cur_seen) {
		/* the record is gone, its file may not be */
		if (lmbox_sdict_file_read(store, cur_id, &fbuf, &fdict, &flen) == 0) {
			lmbox_problem(ctx, "%s: store dictionary %08lX has no record; its file "
				      "is good%s", store->mdb_path, (unsigned long)cur_id,
				      ctx->repair ? " (record rewritten from it)" : "");
			cur_good = true;
			if (ctx->repair)
				rc = lmbox_check_put_dict(ctx, cur_id, fdict, flen);
			free(fbuf);
			if (rc != 0 && rc != MDB_NOTFOUND)
				return lmbox_check_mdb(ctx, rc, "rewriting a store dictionary");
		}
	}
	if (cur_id != 0 && !cur_good) {
		MDB_val mk = { strlen(LMBOX_META_DICT), (void *)LMBOX_META_DICT };

		/* new messages would be compressed with a dictionary nobody
		   can read: forget it (a new one is trained) */
		lmbox_problem(ctx, "%s: the store dictionary %08lX new messages use is missing "
			      "or damaged%s", store->mdb_path, (unsigned long)cur_id,
			      ctx->repair ? " (no longer used)" : "");
		if (ctx->repair && (rc = mdb_del(ctx->txn, store->env->dbi_meta, &mk, NULL)) != 0)
			return lmbox_check_mdb(ctx, rc, "forgetting the store dictionary");
	}
	return 0;
}

static void lmbox_warning(struct lmbox_check_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A line that is not a problem (not counted): something harmless. */
static void lmbox_warning(struct lmbox_check_ctx *ctx, const char *fmt, ...)
{
	char line[4096];
	va_list args;
	int n;

	n = snprintf(line, sizeof(line), "warning: ");
	va_start(args, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, args);
	va_end(args);
	if (ctx->report != NULL)
		ctx->report(ctx->context, line);
}

/* 1 if name is a published dictionary file name, XXXXXXXX.dict (*id_r). */
static int lmbox_dict_file_name(const char *name, uint32_t *id_r)
{
	uint32_t id = 0;

	if (strlen(name) != 8 + 5 || strcmp(name + 8, ".dict") != 0)
		return 0;
	for (unsigned int i = 0; i < 8; i++) {
		char c = name[i];
		uint32_t d;

		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (uint32_t)(c - 'A' + 10);
		else
			return 0;
		id = id << 4 | d;
	}
	*id_r = id;
	return 1;
}

/* Files in DIR/dict/ that nothing uses: a XXXXXXXX.dict.PID.tmp a writer
 * left (killed between create and rename), or a XXXXXXXX.dict with no
 * record in "dicts" that meta "dict" does not name either (killed after
 * the file, before the publishing commit).  They lose no mail: warnings,
 * not problems.  --repair removes those older than
 * LMBOX_CHECK_ORPHAN_AGE: a younger one may be a training in another
 * process between its file and its commit. */
#define LMBOX_CHECK_ORPHAN_AGE 600
static int lmbox_check_dict_orphans(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	char dir[4096], path[4400];
	unsigned char key[4];
	MDB_val k = { 4, key }, v;
	struct dirent *de;
	struct stat st;
	uint32_t id, cur_id = 0;
	bool tmp;
	DIR *dh;
	int rc;

	if (!store->env->has_dicts)
		return 0;
	snprintf(dir, sizeof(dir), "%s/" LMBOX_DICT_DIR, store->dir);
	if ((dh = opendir(dir)) == NULL) {
		if (errno != ENOENT && errno != ENOTDIR)
			lmbox_warning(ctx, "%s: cannot list it: %s", dir, strerror(errno));
		return 0;
	}
	if (lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_DICT, &cur_id) < 0)
		cur_id = 0;
	while ((de = readdir(dh)) != NULL) {
		size_t len = strlen(de->d_name);

		tmp = len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0;
		if (!tmp) {
			if (!lmbox_dict_file_name(de->d_name, &id) || id == cur_id)
				continue;
			key[0] = (unsigned char)(id >> 24);
			key[1] = (unsigned char)(id >> 16);
			key[2] = (unsigned char)(id >> 8);
			key[3] = (unsigned char)id;
			rc = mdb_get(ctx->txn, store->env->dbi_dicts, &k, &v);
			if (rc == 0)
				continue;
			if (rc != MDB_NOTFOUND) {
				closedir(dh);
				return lmbox_check_mdb(ctx, rc, "checking store dictionary files");
			}
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (!ctx->repair) {
			lmbox_warning(ctx, "%s: %s (no mail in it; check --repair removes it once %d s old)",
				      path, tmp ? "an unfinished dictionary file" :
				      "a dictionary file no record names", LMBOX_CHECK_ORPHAN_AGE);
		} else if ((long long)st.st_mtime > ctx->repair_time - LMBOX_CHECK_ORPHAN_AGE) {
			lmbox_warning(ctx, "%s: %s, left: less than %d s old", path,
				      tmp ? "an unfinished dictionary file" :
				      "a dictionary file no record names", LMBOX_CHECK_ORPHAN_AGE);
		} else if (unlink(path) < 0 && errno != ENOENT) {
			lmbox_warning(ctx, "%s: removing it failed: %s", path, strerror(errno));
		} else {
			lmbox_warning(ctx, "%s: %s (removed)", path,
				      tmp ? "an unfinished dictionary file" :
				      "a dictionary file no record names");
		}
	}
	closedir(dh);
	return 0;
}

static int lmbox_check_run(struct lmbox_check_ctx *ctx)
{
	int ret;

	ctx->problems = 0;
	ctx->folder_count = 0;
	ctx->seg_count = 0;
	ctx->blobs_expected = 0;
	ctx->blobs_bad = false;
	ctx->missing_count = 0;
	if ((ret = lmbox_check_folders(ctx)) < 0 ||
	    (ret = lmbox_check_segs_load(ctx)) < 0 ||
	    (ret = lmbox_check_msgs(ctx)) < 0 ||
	    (ret = lmbox_check_uidls(ctx)) < 0 ||
	    (ret = lmbox_check_blobs(ctx)) < 0 ||
	    (ret = lmbox_check_counters(ctx)) < 0 ||
	    (ret = lmbox_check_segments(ctx)) < 0 ||
	    (ret = lmbox_check_reclaim(ctx)) < 0 ||
	    (ret = lmbox_check_pending(ctx)) < 0 ||
	    (ret = lmbox_check_dicts(ctx)) < 0 ||
	    (ret = lmbox_check_dict_orphans(ctx)) < 0)
		return ret;
	return 0;
}

/* Walk every page of every database of a private, read-only environment
 * in a child process.  LMDB trusts its file: a damaged branch page can
 * make it read outside the map or trip an assert.  Here that kills only
 * the child, and check reports the file instead of crashing. */
static int lmbox_check_mdb_walk_child(const char *path)
{
	static const char *const dbs[] = {
		LMBOX_DB_META, LMBOX_DB_VALUES, LMBOX_DB_FOLDERS, LMBOX_DB_NAMES,
		LMBOX_DB_MSGS, LMBOX_DB_UIDLS, LMBOX_DB_SEGS, LMBOX_DB_RECLAIM,
		LMBOX_DB_BLOBS, LMBOX_DB_PENDING,
	};
	MDB_env *env;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_dbi dbi;
	MDB_val k, v;
	int rc;

	if (mdb_env_create(&env) != 0)
		return 2;
	mdb_env_set_maxdbs(env, 16);
	if (mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOTLS, 0) != 0 ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
		return 1;
	for (size_t i = 0; i <= sizeof(dbs) / sizeof(dbs[0]); i++) {
		/* i == count: the main DB, which names the others */
		rc = mdb_dbi_open(txn, i < sizeof(dbs) / sizeof(dbs[0]) ? dbs[i] : NULL, 0, &dbi);
		/* stores from before the newer databases have none */
		if (rc == MDB_NOTFOUND && i < sizeof(dbs) / sizeof(dbs[0]) &&
		    (strcmp(dbs[i], LMBOX_DB_BLOBS) == 0 || strcmp(dbs[i], LMBOX_DB_PENDING) == 0))
			continue;
		if (rc != 0 || mdb_cursor_open(txn, dbi, &cur) != 0)
			return 1;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) ;
		if (rc != MDB_NOTFOUND)
			return 1;
		mdb_cursor_close(cur);
	}
	return 0;
}

static int lmbox_check_mdb_structure(struct lmbox_check_ctx *ctx)
{
	struct lmbox_store *store = ctx->store;
	pid_t pid;
	int status;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return 0; /* cannot tell: the walk below will have to do */
	if (pid == 0)
		_exit(lmbox_check_mdb_walk_child(store->mdb_path));
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return 0; /* reaped by someone else's SIGCHLD handler */
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
		return 0;
	if (WIFSIGNALED(status)) {
		lmbox_problem(ctx, "%s: LMDB structure is damaged (walking it died of signal %d); "
			      "restore the store from a backup", store->mdb_path, WTERMSIG(status));
	} else {
		lmbox_problem(ctx, "%s: LMDB structure is damaged (walking it failed); "
			      "restore the store from a backup", store->mdb_path);
	}
	return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: LMDB structure is damaged",
			       store->mdb_path);
}

static int lmbox_check_write_fn(struct lmbox_wctx *wctx, void *context)
{
	struct lmbox_check_ctx *ctx = context;

	ctx->txn = wctx->txn;
	return lmbox_check_run(ctx);
}

int lmbox_check(struct lmbox_store *store, unsigned int flags,
		lmbox_report_fn *report, void *context)
{
	struct lmbox_check_ctx ctx;
	int ret;

	memset(&ctx, 0, sizeof(ctx));
	ctx.store = store;
	ctx.flags = flags;
	ctx.report = report;
	ctx.context = context;
	ctx.repair = (flags & LMBOX_CHECK_REPAIR) != 0;
	ctx.repair_time = (long long)time(NULL);
	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	if (lmbox_check_mdb_structure(&ctx) < 0) {
		/* walking it here could crash this process: stop */
		return ctx.problems;
	}
	if (ctx.repair) {
		ret = lmbox_write(store, lmbox_check_write_fn, &ctx);
	} else if ((ret = lmbox_store_check_usable(store, false)) == 0 &&
		   (ret = lmbox_rtxn_begin(store, &ctx.txn)) == 0) {
		store->env->map_pins++;
		ret = lmbox_check_run(&ctx);
		store->env->map_pins--;
		mdb_txn_abort(ctx.txn);
	}
	free(ctx.folders);
	free(ctx.segs);
	free(ctx.missing_segs);
	return ret < 0 ? ret : ctx.problems;
}
