/*
 * lmbox-folder.c: folders.  A folder is one record in the "folders" DB
 * (keyed by its never-reused id) holding everything a POP3 STAT or a sync
 * check needs, so every lookup is O(1).  The "names" DB maps a name (prefix,
 * see LMBOX_NAME_KEY_MAX) to the id.
 */
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

static MDB_val lmbox_name_key(const char *name)
{
	MDB_val k;
	size_t len = strlen(name);

	k.mv_data = (void *)name;
	k.mv_size = len > LMBOX_NAME_KEY_MAX ? LMBOX_NAME_KEY_MAX : len;
	return k;
}

static int lmbox_folder_name_check(struct lmbox_store *store, const char *name)
{
	size_t len = name == NULL ? 0 : strlen(name);

	if (len == 0 || len > LMBOX_MAX_FOLDER_NAME) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: folder name must be 1-%d bytes", store->dir, LMBOX_MAX_FOLDER_NAME);
	}
	return 0;
}

int lmbox_folder_load(struct lmbox_store *store, MDB_txn *txn, uint32_t folder_id,
		      struct lmbox_folder_info *info_r)
{
	unsigned char key[4];
	MDB_val k = { 4, key }, v;
	int rc;

	lmbox_put_be32(key, folder_id);
	rc = mdb_get(txn, store->env->dbi_folders, &k, &v);
	if (rc == MDB_NOTFOUND) {
		return lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: no folder with id %u",
				       store->dir, folder_id);
	}
	if (rc != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: reading folder %u",
					   store->dir, folder_id);
	}
	if (lmbox_folder_decode(v.mv_data, v.mv_size, info_r) < 0 || info_r->id != folder_id) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: folder record %u is malformed", store->mdb_path, folder_id);
	}
	return 0;
}

int lmbox_folder_load_name(struct lmbox_store *store, MDB_txn *txn, const char *name,
			   struct lmbox_folder_info *info_r)
{
	MDB_val k = lmbox_name_key(name), v;
	MDB_cursor *cur;
	uint32_t id;
	int rc, ret;

	if ((rc = mdb_cursor_open(txn, store->env->dbi_names, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	ret = lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: no folder named \"%s\"",
			      store->dir, name);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
		if (lmbox_u32_key_decode(v.mv_data, v.mv_size, &id) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: names entry of \"%s\" is malformed", store->mdb_path, name);
			break;
		}
		if ((ret = lmbox_folder_load(store, txn, id, info_r)) < 0) {
			if (ret == LMBOX_ERR_NOTFOUND) {
				ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
					"%s: name \"%s\" points to missing folder %u",
					store->mdb_path, name, id);
			}
			break;
		}
		if (strcmp(info_r->name, name) == 0)
			break;
		ret = lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s: no folder named \"%s\"",
				      store->dir, name);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		ret = lmbox_set_mdb_error(store, rc, "%s: reading names", store->dir);
	mdb_cursor_close(cur);
	return ret;
}

int lmbox_folder_save(struct lmbox_store *store, MDB_txn *txn,
		      const struct lmbox_folder_info *info)
{
	unsigned char key[4];
	MDB_val k = { 4, key }, v;
	int rc;

	lmbox_put_be32(key, info->id);
	v.mv_size = lmbox_folder_encoded_size(info);
	v.mv_data = NULL;
	rc = mdb_put(txn, store->env->dbi_folders, &k, &v, MDB_RESERVE);
	if (rc != 0) {
		return lmbox_set_mdb_error(store, rc, "%s: writing folder %u (%s)",
					   store->dir, info->id, info->name);
	}
	lmbox_folder_encode(info, v.mv_data);
	return 0;
}

int lmbox_wctx_touch_folder(struct lmbox_wctx *ctx, uint32_t folder_id)
{
	for (unsigned int i = 0; i < ctx->folder_count; i++) {
		if (ctx->folders[i] == folder_id)
			return 0;
	}
	if (lmbox_grow_array(&ctx->folders, &ctx->folder_alloc,
			     ctx->folder_count + 1, sizeof(uint32_t)) < 0)
		return lmbox_set_error(ctx->store, LMBOX_ERR_NOMEM, "out of memory");
	ctx->folders[ctx->folder_count++] = folder_id;
	return 1;
}

/* --------------------------------------------------------------- create */

struct lmbox_folder_create_ctx {
	const char *name;
	uint32_t uidvalidity;
	const uint8_t *guid;
	uint8_t random_guid[LMBOX_GUID_SIZE];
	uint32_t id;
};

static int lmbox_folder_create_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_folder_create_ctx *c = context;
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info info;
	unsigned char idbuf[4];
	MDB_val k, v = { 4, idbuf };
	uint32_t next_id, last_uv;
	int rc, ret;

	ret = lmbox_folder_load_name(store, ctx->txn, c->name, &info);
	if (ret == 0) {
		return lmbox_set_error(store, LMBOX_ERR_EXISTS, "%s: folder \"%s\" already exists",
				       store->dir, c->name);
	}
	if (ret != LMBOX_ERR_NOTFOUND)
		return ret;
	if ((ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_NEXT_FOLDER_ID, &next_id)) < 0 ||
	    (ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_LAST_UIDVALIDITY, &last_uv)) < 0)
		return ret == LMBOX_ERR_NOTFOUND ?
			lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: meta counters missing",
					store->mdb_path) : ret;
	if (next_id == 0 || next_id == UINT32_MAX)
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s: folder ids exhausted",
				       store->mdb_path);

	memset(&info, 0, sizeof(info));
	info.id = next_id;
	info.next_uid = 1;
	info.uidvalidity = c->uidvalidity;
	if (info.uidvalidity == 0) {
		/* time-based like Dovecot, but unique within the store */
		int64_t now = lmbox_now();
		info.uidvalidity = now > 0 && now < UINT32_MAX ? (uint32_t)now : 1;
		if (info.uidvalidity <= last_uv)
			info.uidvalidity = last_uv == UINT32_MAX ? 1 : last_uv + 1;
	}
	memcpy(info.guid, c->guid != NULL ? c->guid : c->random_guid, LMBOX_GUID_SIZE);
	strcpy(info.name, c->name);
	if ((ret = lmbox_folder_save(store, ctx->txn, &info)) < 0)
		return ret;
	k = lmbox_name_key(c->name);
	lmbox_put_be32(idbuf, info.id);
	if ((rc = mdb_put(ctx->txn, store->env->dbi_names, &k, &v, 0)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: writing name of \"%s\"", store->dir, c->name);
	if ((ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_NEXT_FOLDER_ID, next_id + 1)) < 0)
		return ret;
	if (info.uidvalidity > last_uv &&
	    (ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_LAST_UIDVALIDITY,
				      info.uidvalidity)) < 0)
		return ret;
	c->id = info.id;
	return 0;
}

int lmbox_folder_create(struct lmbox_store *store, const char *name,
			uint32_t uidvalidity, const uint8_t *guid, uint32_t *id_r)
{
	struct lmbox_folder_create_ctx c;
	int ret;

	if ((ret = lmbox_folder_name_check(store, name)) < 0)
		return ret;
	memset(&c, 0, sizeof(c));
	c.name = name;
	c.uidvalidity = uidvalidity;
	c.guid = guid;
	lmbox_random_bytes(c.random_guid, sizeof(c.random_guid));
	if ((ret = lmbox_write(store, lmbox_folder_create_fn, &c)) < 0)
		return ret;
	if (id_r != NULL)
		*id_r = c.id;
	return 0;
}

/* --------------------------------------------------------------- lookups */

int lmbox_folder_lookup(struct lmbox_store *store, const char *name,
			struct lmbox_folder_info *info_r)
{
	MDB_txn *txn;
	int ret;

	if ((ret = lmbox_store_check_usable(store, false)) < 0 ||
	    (ret = lmbox_folder_name_check(store, name)) < 0 ||
	    (ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	ret = lmbox_folder_load_name(store, txn, name, info_r);
	mdb_txn_abort(txn);
	return ret;
}

int lmbox_folder_get(struct lmbox_store *store, uint32_t folder_id,
		     struct lmbox_folder_info *info_r)
{
	MDB_txn *txn;
	int ret;

	if ((ret = lmbox_store_check_usable(store, false)) < 0 ||
	    (ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	ret = lmbox_folder_load(store, txn, folder_id, info_r);
	mdb_txn_abort(txn);
	return ret;
}

/* --------------------------------------------------------------- rename */

struct lmbox_folder_rename_ctx {
	const char *old_name, *new_name;
};

static int lmbox_folder_rename_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_folder_rename_ctx *c = context;
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info info, other;
	unsigned char idbuf[4];
	MDB_val k, v = { 4, idbuf };
	int rc, ret;

	if ((ret = lmbox_folder_load_name(store, ctx->txn, c->old_name, &info)) < 0)
		return ret;
	if (strcmp(c->old_name, c->new_name) == 0)
		return 0;
	ret = lmbox_folder_load_name(store, ctx->txn, c->new_name, &other);
	if (ret == 0) {
		return lmbox_set_error(store, LMBOX_ERR_EXISTS,
			"%s: cannot rename \"%s\": folder \"%s\" already exists",
			store->dir, c->old_name, c->new_name);
	}
	if (ret != LMBOX_ERR_NOTFOUND)
		return ret;
	lmbox_put_be32(idbuf, info.id);
	k = lmbox_name_key(c->old_name);
	if ((rc = mdb_del(ctx->txn, store->env->dbi_names, &k, &v)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: removing name \"%s\"", store->dir, c->old_name);
	k = lmbox_name_key(c->new_name);
	if ((rc = mdb_put(ctx->txn, store->env->dbi_names, &k, &v, 0)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: adding name \"%s\"", store->dir, c->new_name);
	strcpy(info.name, c->new_name);
	info.change_counter++;
	return lmbox_folder_save(store, ctx->txn, &info);
}

int lmbox_folder_rename(struct lmbox_store *store, const char *old_name,
			const char *new_name)
{
	struct lmbox_folder_rename_ctx c = { old_name, new_name };
	int ret;

	if ((ret = lmbox_folder_name_check(store, old_name)) < 0 ||
	    (ret = lmbox_folder_name_check(store, new_name)) < 0)
		return ret;
	return lmbox_write(store, lmbox_folder_rename_fn, &c);
}

/* --------------------------------------------------------------- delete */

static int lmbox_folder_delete_fn(struct lmbox_wctx *ctx, void *context)
{
	const char *name = context;
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info info;
	struct lmbox_msg_meta meta;
	unsigned char key[8], idbuf[4];
	MDB_val k, v;
	MDB_cursor *cur;
	uint32_t fid, uid;
	int rc, ret = 0;

	if ((ret = lmbox_folder_load_name(store, ctx->txn, name, &info)) < 0)
		return ret;

	/* every message: its blob becomes dead space */
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_msgs, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	lmbox_msg_key_encode(key, info.id, 0);
	k.mv_data = key;
	k.mv_size = 8;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) {
		if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &fid, &uid) < 0 ||
		    fid != info.id)
			break;
		if (lmbox_msg_decode(v.mv_data, v.mv_size, &meta) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: message record %u/%u is malformed", store->mdb_path, fid, uid);
			break;
		}
		if ((ret = lmbox_wseg_blob_dead(ctx, meta.seg_id, meta.seg_offset,
						meta.stored_size)) < 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		k.mv_data = key;
		k.mv_size = 8;
	}
	mdb_cursor_close(cur);
	if (ret < 0)
		return ret;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmbox_set_mdb_error(store, rc, "%s: deleting messages of \"%s\"", store->dir, name);

	/* its UIDL index */
	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_uidls, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	lmbox_put_be32(idbuf, info.id);
	k.mv_data = idbuf;
	k.mv_size = 4;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) {
		if (k.mv_size < 4 || lmbox_get_be32(k.mv_data) != info.id) {
			rc = MDB_NOTFOUND;
			break;
		}
		if ((rc = mdb_cursor_del(cur, MDB_NODUPDATA)) != 0)
			break;
		k.mv_data = idbuf;
		k.mv_size = 4;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmbox_set_mdb_error(store, rc, "%s: deleting UIDLs of \"%s\"", store->dir, name);

	k = lmbox_name_key(name);
	v.mv_data = idbuf;
	v.mv_size = 4;
	if ((rc = mdb_del(ctx->txn, store->env->dbi_names, &k, &v)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: removing name \"%s\"", store->dir, name);
	k.mv_data = idbuf;
	k.mv_size = 4;
	if ((rc = mdb_del(ctx->txn, store->env->dbi_folders, &k, NULL)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: removing folder \"%s\"", store->dir, name);
	return 0;
}

int lmbox_folder_delete(struct lmbox_store *store, const char *name)
{
	int ret;

	if ((ret = lmbox_folder_name_check(store, name)) < 0)
		return ret;
	return lmbox_write(store, lmbox_folder_delete_fn, (void *)name);
}

/* --------------------------------------------------------------- update */

struct lmbox_folder_update_ctx {
	uint32_t folder_id, uidvalidity, min_next_uid;
	const uint8_t *guid;
};

static int lmbox_folder_update_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_folder_update_ctx *c = context;
	struct lmbox_folder_info info;
	uint32_t last_uv;
	int ret;

	if ((ret = lmbox_folder_load(ctx->store, ctx->txn, c->folder_id, &info)) < 0)
		return ret;
	if (c->uidvalidity != 0) {
		info.uidvalidity = c->uidvalidity;
		if (lmbox_meta_get_u32(ctx->store, ctx->txn, LMBOX_META_LAST_UIDVALIDITY,
				       &last_uv) == 0 && c->uidvalidity > last_uv &&
		    (ret = lmbox_meta_put_u32(ctx->store, ctx->txn,
					      LMBOX_META_LAST_UIDVALIDITY, c->uidvalidity)) < 0)
			return ret;
	}
	if (c->min_next_uid > info.next_uid)
		info.next_uid = c->min_next_uid;
	if (c->guid != NULL)
		memcpy(info.guid, c->guid, LMBOX_GUID_SIZE);
	info.change_counter++;
	return lmbox_folder_save(ctx->store, ctx->txn, &info);
}

int lmbox_folder_update(struct lmbox_store *store, uint32_t folder_id,
			uint32_t uidvalidity, uint32_t min_next_uid,
			const uint8_t *guid)
{
	struct lmbox_folder_update_ctx c = { folder_id, uidvalidity, min_next_uid, guid };

	return lmbox_write(store, lmbox_folder_update_fn, &c);
}

/* ------------------------------------------------------------- iteration */

struct lmbox_folder_iter {
	struct lmbox_folder_info *infos;
	unsigned int count, alloc, pos;
};

static int lmbox_folder_info_cmp(const void *a, const void *b)
{
	const struct lmbox_folder_info *fa = a, *fb = b;

	return strcmp(fa->name, fb->name);
}

int lmbox_folder_iter_init(struct lmbox_store *store, struct lmbox_folder_iter **iter_r)
{
	struct lmbox_folder_iter *iter;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	uint32_t id;
	int rc, ret;

	*iter_r = NULL;
	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	/* Folders are few: snapshot them all, sorted, so the iterator
	 * holds no read transaction. */
	if ((iter = calloc(1, sizeof(*iter))) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0) {
		free(iter);
		return ret;
	}
	if ((rc = mdb_cursor_open(txn, store->env->dbi_folders, &cur)) != 0) {
		ret = lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
		goto out;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_grow_array(&iter->infos, &iter->alloc, iter->count + 1,
				     sizeof(*iter->infos)) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			break;
		}
		if (lmbox_u32_key_decode(k.mv_data, k.mv_size, &id) < 0 ||
		    lmbox_folder_decode(v.mv_data, v.mv_size, &iter->infos[iter->count]) < 0 ||
		    iter->infos[iter->count].id != id) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: a folder record is malformed", store->mdb_path);
			break;
		}
		iter->count++;
	}
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = lmbox_set_mdb_error(store, rc, "%s: reading folders", store->dir);
	mdb_cursor_close(cur);
out:
	mdb_txn_abort(txn);
	if (ret < 0) {
		free(iter->infos);
		free(iter);
		return ret;
	}
	if (iter->count > 1)
		qsort(iter->infos, iter->count, sizeof(*iter->infos), lmbox_folder_info_cmp);
	*iter_r = iter;
	return 0;
}

int lmbox_folder_iter_next(struct lmbox_folder_iter *iter, struct lmbox_folder_info *info_r)
{
	if (iter->pos >= iter->count)
		return 0;
	*info_r = iter->infos[iter->pos++];
	return 1;
}

void lmbox_folder_iter_deinit(struct lmbox_folder_iter **_iter)
{
	struct lmbox_folder_iter *iter = *_iter;

	if (iter == NULL)
		return;
	*_iter = NULL;
	free(iter->infos);
	free(iter);
}
