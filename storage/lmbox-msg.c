/*
 * lmbox-msg.c: message records inside a write transaction.  Adding or
 * removing a message keeps three things in step: its record in "msgs", its
 * UIDL index entry, and its folder's counters (count, sizes, change
 * counter).  lmbox_check() verifies exactly these invariants.
 */
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

int lmbox_msg_read_error(struct lmbox_store *store, int rc, uint32_t folder_id,
			 uint32_t uid)
{
	if (rc == MDB_NOTFOUND) {
		return lmbox_set_error(store, LMBOX_ERR_NOTFOUND,
			"%s: no message uid %u in folder %u", store->dir, uid, folder_id);
	}
	return lmbox_set_mdb_error(store, rc, "%s: reading message %u/%u",
				   store->dir, folder_id, uid);
}

int lmbox_msg_corrupt_error(struct lmbox_store *store, uint32_t folder_id, uint32_t uid)
{
	return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
		"%s: record of message uid %u in folder %u is malformed",
		store->mdb_path, uid, folder_id);
}

int lmbox_msg_load(struct lmbox_store *store, MDB_txn *txn, uint32_t folder_id,
		   uint32_t uid, struct lmbox_msg_meta *meta_r)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc;

	lmbox_msg_key_encode(key, folder_id, uid);
	rc = mdb_get(txn, store->env->dbi_msgs, &k, &v);
	if (rc != 0)
		return lmbox_msg_read_error(store, rc, folder_id, uid);
	if (lmbox_msg_decode(v.mv_data, v.mv_size, meta_r) < 0)
		return lmbox_msg_corrupt_error(store, folder_id, uid);
	meta_r->folder_id = folder_id;
	meta_r->uid = uid;
	return 0;
}

int lmbox_msg_save(struct lmbox_store *store, MDB_txn *txn,
		   const struct lmbox_msg_meta *meta, bool new_msg)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	size_t size = lmbox_msg_encoded_size(meta);
	unsigned char tmp[LMBOX_MSG_REC_FIXED + LMBOX_MAX_UIDL_LEN + 1];
	unsigned char *buf = NULL;
	int rc;

	/* meta may point into the map page that MDB_RESERVE would hand
	 * out: encode into our own memory first */
	if (size <= sizeof(tmp)) {
		buf = tmp;
	} else if ((buf = malloc(size)) == NULL) {
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	}
	lmbox_msg_encode(meta, buf);
	lmbox_msg_key_encode(key, meta->folder_id, meta->uid);
	v.mv_size = size;
	v.mv_data = buf;
	rc = mdb_put(txn, store->env->dbi_msgs, &k, &v, new_msg ? MDB_NOOVERWRITE : 0);
	if (buf != tmp)
		free(buf);
	if (rc == MDB_KEYEXIST) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: message uid %u in folder %u exists although uid is below next_uid",
			store->mdb_path, meta->uid, meta->folder_id);
	}
	if (rc != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: writing message uid %u in folder %u",
					   store->dir, meta->uid, meta->folder_id);
	}
	return 0;
}

static int lmbox_folder_touched(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder)
{
	int ret = lmbox_wctx_touch_folder(ctx, folder->id);

	if (ret > 0)
		folder->change_counter++;
	return ret < 0 ? ret : 0;
}

int lmbox_msg_add(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder,
		  struct lmbox_msg_meta *meta)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[4 + LMBOX_MAX_UIDL_LEN], uidbuf[4];
	MDB_val k, v = { 4, uidbuf };
	int rc, ret;

	meta->folder_id = folder->id;
	if ((ret = lmbox_msg_save(store, ctx->txn, meta, true)) < 0)
		return ret;
	k.mv_data = key;
	k.mv_size = lmbox_uidl_key_encode(key, folder->id, meta->uidl);
	lmbox_put_be32(uidbuf, meta->uid);
	rc = mdb_put(ctx->txn, store->env->dbi_uidls, &k, &v, MDB_NODUPDATA);
	if (rc != 0 && rc != MDB_KEYEXIST) {
		return lmbox_set_mdb_error(store, rc, "%s: indexing UIDL of uid %u in folder \"%s\"",
					   store->dir, meta->uid, folder->name);
	}
	folder->count++;
	folder->vsize_total += meta->virt_size;
	folder->psize_total += meta->phys_size;
	return lmbox_folder_touched(ctx, folder);
}

int lmbox_msg_unlink(struct lmbox_wctx *ctx, const struct lmbox_msg_meta *meta,
		     bool keep_blob)
{
	struct lmbox_store *store = ctx->store;
	unsigned char key[8], ukey[4 + LMBOX_MAX_UIDL_LEN], uidbuf[4];
	MDB_val k = { 8, key }, v = { 4, uidbuf };
	uint32_t seg_id = meta->seg_id;
	uint64_t seg_offset = meta->seg_offset, stored = meta->stored_size;
	int rc;

	/* the UIDL key first: meta->uidl points into the record we delete */
	k.mv_data = ukey;
	k.mv_size = lmbox_uidl_key_encode(ukey, meta->folder_id, meta->uidl);
	lmbox_put_be32(uidbuf, meta->uid);
	rc = mdb_del(ctx->txn, store->env->dbi_uidls, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		return lmbox_set_mdb_error(store, rc, "%s: unindexing UIDL of uid %u in folder %u",
					   store->dir, meta->uid, meta->folder_id);
	}
	lmbox_msg_key_encode(key, meta->folder_id, meta->uid);
	k.mv_data = key;
	k.mv_size = 8;
	if ((rc = mdb_del(ctx->txn, store->env->dbi_msgs, &k, NULL)) != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: deleting uid %u in folder %u",
					   store->dir, meta->uid, meta->folder_id);
	}
	if (!keep_blob)
		return lmbox_wseg_blob_dead(ctx, seg_id, seg_offset, stored);
	return 0;
}

int lmbox_msg_remove(struct lmbox_wctx *ctx, struct lmbox_folder_info *folder,
		     const struct lmbox_msg_meta *meta, bool keep_blob)
{
	uint64_t virt = meta->virt_size, phys = meta->phys_size;
	int ret;

	if (meta->folder_id != folder->id) {
		return lmbox_set_error(ctx->store, LMBOX_ERR_INVALID,
			"%s: uid %u is of folder %u, not %u", ctx->store->dir,
			meta->uid, meta->folder_id, folder->id);
	}
	if ((ret = lmbox_msg_unlink(ctx, meta, keep_blob)) < 0)
		return ret;
	/* counters never wrap: a corrupt total is repaired by lmbox_check */
	folder->count = folder->count > 0 ? folder->count - 1 : 0;
	folder->vsize_total = folder->vsize_total >= virt ? folder->vsize_total - virt : 0;
	folder->psize_total = folder->psize_total >= phys ? folder->psize_total - phys : 0;
	return lmbox_folder_touched(ctx, folder);
}

const char *lmbox_meta_next_keyword(const struct lmbox_msg_meta *meta, const char *pos)
{
	const char *end;

	if (meta->kw_count == 0 || meta->keywords == NULL)
		return NULL;
	if (pos == NULL)
		return meta->keywords;
	end = meta->keywords + lmbox_keywords_size(meta->keywords, meta->kw_count);
	pos += strlen(pos) + 1;
	return pos < end ? pos : NULL;
}
