/*
 * lmbox-reader.c: readers (one LMDB read transaction = one snapshot), and
 * the lookups done in them: folder info, message metadata, UIDL -> UID,
 * and iteration of a folder's messages in UID order.  A reader takes a
 * reader slot and pins the map: while any reader of this process is open
 * the map cannot be resized (see lmbox_write()).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmbox-private.h"

/* Arena of strings handed out by a reader, freed at refresh and end. */
struct lmbox_arena_chunk {
	struct lmbox_arena_chunk *next;
	size_t used, size;
	char data[];
};

#define LMBOX_ARENA_CHUNK (16 * 1024)

static void lmbox_arena_free(struct lmbox_reader *reader)
{
	while (reader->arena != NULL) {
		struct lmbox_arena_chunk *chunk = reader->arena;

		reader->arena = chunk->next;
		free(chunk);
	}
}

static const char *lmbox_arena_copy(struct lmbox_reader *reader, const char *data, size_t size)
{
	struct lmbox_arena_chunk *chunk = reader->arena;
	char *p;

	if (chunk == NULL || chunk->size - chunk->used < size) {
		size_t csize = size > LMBOX_ARENA_CHUNK ? size : LMBOX_ARENA_CHUNK;

		if ((chunk = malloc(sizeof(*chunk) + csize)) == NULL)
			return NULL;
		chunk->used = 0;
		chunk->size = csize;
		chunk->next = reader->arena;
		reader->arena = chunk;
	}
	p = chunk->data + chunk->used;
	memcpy(p, data, size);
	chunk->used += size;
	return p;
}

/* Move meta's strings out of the map into the reader's arena. */
static int lmbox_reader_own_meta(struct lmbox_reader *reader, struct lmbox_msg_meta *meta)
{
	size_t kw_size = lmbox_keywords_size(meta->keywords, meta->kw_count);

	meta->uidl = lmbox_arena_copy(reader, meta->uidl, strlen(meta->uidl) + 1);
	if (kw_size > 0)
		meta->keywords = lmbox_arena_copy(reader, meta->keywords, kw_size);
	else
		meta->keywords = "";
	if (meta->uidl == NULL || meta->keywords == NULL) {
		return lmbox_set_error(reader->store, LMBOX_ERR_NOMEM,
				       "%s: out of memory", reader->store->dir);
	}
	return 0;
}

int lmbox_reader_begin(struct lmbox_store *store, struct lmbox_reader **reader_r)
{
	struct lmbox_reader *reader;
	int ret;

	*reader_r = NULL;
	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	if ((reader = calloc(1, sizeof(*reader))) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	reader->store = store;
	if (!store->env->rdonly)
		lmbox_maybe_grow_early(store);
	if ((ret = lmbox_rtxn_begin(store, &reader->txn)) < 0) {
		free(reader);
		return ret;
	}
	reader->pending = lmbox_pending_nonempty(store, reader->txn);
	*reader_r = reader;
	return 0;
}

void lmbox_reader_end(struct lmbox_reader **_reader)
{
	struct lmbox_reader *reader = *_reader;

	if (reader == NULL)
		return;
	*_reader = NULL;
	/* after fork the transaction belongs to the parent's environment */
	if (lmbox_same_process(reader->store)) {
		if (reader->guid_cur != NULL)
			mdb_cursor_close(reader->guid_cur);
		if (reader->txn != NULL)
			mdb_txn_abort(reader->txn);
	}
	lmbox_arena_free(reader);
	free(reader);
}

int lmbox_reader_refresh(struct lmbox_reader *reader)
{
	struct lmbox_store *store = reader->store;
	int rc, ret;

	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	lmbox_arena_free(reader);
	reader->txn_gen++;
	if (reader->guid_cur != NULL) {
		mdb_cursor_close(reader->guid_cur);
		reader->guid_cur = NULL;
	}
	if (reader->txn != NULL) {
		mdb_txn_reset(reader->txn);
		rc = mdb_txn_renew(reader->txn);
		if (rc != 0) {
			mdb_txn_abort(reader->txn);
			reader->txn = NULL;
			/* MDB_MAP_RESIZED: another process grew the map;
			 * adopt it and start over */
			if (rc != MDB_MAP_RESIZED) {
				return lmbox_set_mdb_error(store, rc,
					"%s: cannot renew read transaction", store->dir);
			}
		}
	}
	if (reader->txn == NULL && (ret = lmbox_rtxn_begin(store, &reader->txn)) < 0)
		return ret;
	reader->pending = lmbox_pending_nonempty(store, reader->txn);
	return 0;
}

static int lmbox_reader_check(struct lmbox_reader *reader)
{
	int ret;

	if ((ret = lmbox_store_check_usable(reader->store, false)) < 0)
		return ret;
	if (reader->txn == NULL) {
		return lmbox_set_error(reader->store, LMBOX_ERR_INVALID,
			"%s: reader has no transaction (failed refresh)", reader->store->dir);
	}
	return 0;
}

int lmbox_reader_folder(struct lmbox_reader *reader, uint32_t folder_id,
			struct lmbox_folder_info *info_r)
{
	int ret;

	if ((ret = lmbox_reader_check(reader)) < 0)
		return ret;
	return lmbox_folder_load(reader->store, reader->txn, folder_id, info_r);
}

int lmbox_reader_folder_by_name(struct lmbox_reader *reader, const char *name,
				struct lmbox_folder_info *info_r)
{
	int ret;

	if ((ret = lmbox_reader_check(reader)) < 0)
		return ret;
	if (name == NULL || name[0] == '\0' || strlen(name) > LMBOX_MAX_FOLDER_NAME) {
		return lmbox_set_error(reader->store, LMBOX_ERR_INVALID,
				       "%s: bad folder name", reader->store->dir);
	}
	return lmbox_folder_load_name(reader->store, reader->txn, name, info_r);
}

int lmbox_reader_msg(struct lmbox_reader *reader, uint32_t folder_id,
		     uint32_t uid, struct lmbox_msg_meta *meta_r)
{
	int ret;

	if ((ret = lmbox_reader_check(reader)) < 0 ||
	    (ret = lmbox_msg_load(reader->store, reader->txn, folder_id, uid, meta_r)) < 0)
		return ret;
	/* an expunge not yet applied to the records: gone */
	if (reader->pending &&
	    (ret = lmbox_pending_get(reader->store, reader->txn, folder_id, uid)) != 0) {
		return ret < 0 ? ret :
			lmbox_msg_read_error(reader->store, MDB_NOTFOUND, folder_id, uid);
	}
	return lmbox_reader_own_meta(reader, meta_r);
}

int lmbox_reader_msg_guid(struct lmbox_reader *reader, uint32_t folder_id,
			  uint32_t uid, uint8_t guid_r[LMBOX_GUID_SIZE])
{
	struct lmbox_store *store = reader->store;
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc, ret;

	if ((ret = lmbox_reader_check(reader)) < 0)
		return ret;
	if (reader->guid_cur == NULL &&
	    (rc = mdb_cursor_open(reader->txn, store->env->dbi_msgs, &reader->guid_cur)) != 0) {
		reader->guid_cur = NULL;
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	}
	lmbox_msg_key_encode(key, folder_id, uid);
	/* MDB_SET_KEY stays on the cursor's leaf page when the key is on it */
	rc = mdb_cursor_get(reader->guid_cur, &k, &v, MDB_SET_KEY);
	if (rc != 0)
		return lmbox_msg_read_error(store, rc, folder_id, uid);
	if (lmbox_msg_decode_guid(v.mv_data, v.mv_size, guid_r) < 0)
		return lmbox_msg_corrupt_error(store, folder_id, uid);
	return 0;
}

/* The lowest UID with this UIDL whose expunge is not pending. */
static int lmbox_reader_uidl_live(struct lmbox_reader *reader, uint32_t folder_id,
				  const char *uidl, MDB_val *k, uint32_t *uid_r)
{
	struct lmbox_store *store = reader->store;
	MDB_cursor *cur;
	MDB_val v;
	int rc, ret = 0;

	if ((rc = mdb_cursor_open(reader->txn, store->env->dbi_uidls, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	for (rc = mdb_cursor_get(cur, k, &v, MDB_SET_KEY); rc == 0;
	     rc = mdb_cursor_get(cur, k, &v, MDB_NEXT_DUP)) {
		if (lmbox_u32_key_decode(v.mv_data, v.mv_size, uid_r) < 0 || *uid_r == 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: UIDL index entry \"%s\" of folder %u is malformed",
				store->mdb_path, uidl, folder_id);
			break;
		}
		if ((ret = lmbox_pending_get(store, reader->txn, folder_id, *uid_r)) <= 0)
			break;
	}
	mdb_cursor_close(cur);
	if (ret < 0)
		return ret;
	if (rc == MDB_NOTFOUND) {
		return lmbox_set_error(store, LMBOX_ERR_NOTFOUND,
			"%s: no message with UIDL \"%s\" in folder %u", store->dir, uidl, folder_id);
	}
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: UIDL lookup", store->dir);
	return 0;
}

int lmbox_reader_uidl(struct lmbox_reader *reader, uint32_t folder_id,
		      const char *uidl, uint32_t *uid_r)
{
	struct lmbox_store *store = reader->store;
	unsigned char key[4 + LMBOX_MAX_UIDL_LEN];
	MDB_val k, v;
	int rc, ret;

	if ((ret = lmbox_reader_check(reader)) < 0)
		return ret;
	if (uidl == NULL || !lmbox_uidl_valid(uidl, strlen(uidl))) {
		/* no such UIDL can be stored */
		return lmbox_set_error(store, LMBOX_ERR_NOTFOUND,
			"%s: no message with UIDL \"%.80s\" in folder %u",
			store->dir, uidl == NULL ? "" : uidl, folder_id);
	}
	k.mv_data = key;
	k.mv_size = lmbox_uidl_key_encode(key, folder_id, uidl);
	/* duplicates sort by big-endian UID: the first is the lowest */
	rc = mdb_get(reader->txn, store->env->dbi_uidls, &k, &v);
	if (rc == MDB_NOTFOUND) {
		return lmbox_set_error(store, LMBOX_ERR_NOTFOUND,
			"%s: no message with UIDL \"%s\" in folder %u", store->dir, uidl, folder_id);
	}
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: UIDL lookup", store->dir);
	if (lmbox_u32_key_decode(v.mv_data, v.mv_size, uid_r) < 0 || *uid_r == 0) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: UIDL index entry \"%s\" of folder %u is malformed",
			store->mdb_path, uidl, folder_id);
	}
	if (!reader->pending)
		return 0;
	return lmbox_reader_uidl_live(reader, folder_id, uidl, &k, uid_r);
}

/* ------------------------------------------------------------ iteration */

struct lmbox_msg_iter {
	struct lmbox_reader *reader;
	MDB_cursor *cursor;
	uint32_t folder_id, from_uid;
	/* the cursor's position is only trusted while neither the map nor
	 * the reader's transaction changed; else re-seek after last_uid */
	unsigned int map_gen, txn_gen;
	MDB_txn *txn;
	uint32_t last_uid;
	unsigned int corrupt;   /* malformed records skipped */
	bool started, done;
	bool borrow;            /* hand out pointers into the map */
	struct lmbox_pending_scan pending; /* expunged, records not deleted yet */
};

int lmbox_msg_iter_init(struct lmbox_reader *reader, uint32_t folder_id,
			uint32_t from_uid, struct lmbox_msg_iter **iter_r)
{
	struct lmbox_msg_iter *iter;
	int rc, ret;

	*iter_r = NULL;
	if ((ret = lmbox_reader_check(reader)) < 0)
		return ret;
	if ((iter = calloc(1, sizeof(*iter))) == NULL)
		return lmbox_set_error(reader->store, LMBOX_ERR_NOMEM, "out of memory");
	rc = mdb_cursor_open(reader->txn, reader->store->env->dbi_msgs, &iter->cursor);
	if (rc != 0) {
		free(iter);
		return lmbox_set_mdb_error(reader->store, rc, "%s: cursor", reader->store->dir);
	}
	iter->reader = reader;
	iter->txn = reader->txn;
	iter->map_gen = reader->store->env->map_gen;
	iter->txn_gen = reader->txn_gen;
	iter->folder_id = folder_id;
	iter->from_uid = from_uid == 0 ? 1 : from_uid;
	iter->pending.next = UINT64_MAX;
	*iter_r = iter;
	return 0;
}

int lmbox_msg_iter_next(struct lmbox_msg_iter *iter, struct lmbox_msg_meta *meta_r)
{
	struct lmbox_store *store = iter->reader->store;
	unsigned char key[8];
	MDB_val k, v;
	uint32_t fid, uid;
	int rc;

	if (iter->done)
		return 0;
	if ((rc = lmbox_reader_check(iter->reader)) < 0)
		return rc;
	if (iter->map_gen != store->env->map_gen || iter->txn_gen != iter->reader->txn_gen ||
	    iter->txn != iter->reader->txn) {
		rc = mdb_cursor_renew(iter->reader->txn, iter->cursor);
		if (rc != 0) {
			return lmbox_set_mdb_error(store, rc, "%s: renewing cursor of folder %u",
						   store->dir, iter->folder_id);
		}
		iter->txn = iter->reader->txn;
		iter->map_gen = store->env->map_gen;
		iter->txn_gen = iter->reader->txn_gen;
		if (iter->started) {
			if (iter->last_uid == UINT32_MAX) {
				iter->done = true;
				return 0;
			}
			iter->from_uid = iter->last_uid + 1;
			iter->started = false;
		}
	}
next:
	if (!iter->started) {
		iter->started = true;
		/* pending expunges of the folder: merged with the walk */
		rc = lmbox_pending_scan_seek(store, iter->reader->txn, &iter->pending,
					     iter->folder_id, iter->from_uid);
		if (rc < 0)
			return rc;
		lmbox_msg_key_encode(key, iter->folder_id, iter->from_uid);
		k.mv_data = key;
		k.mv_size = 8;
		rc = mdb_cursor_get(iter->cursor, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(iter->cursor, &k, &v, MDB_NEXT);
	}
	if (rc == MDB_NOTFOUND) {
		iter->done = true;
		return 0;
	}
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: iterating folder %u",
					   store->dir, iter->folder_id);
	if (k.mv_size == 8 && lmbox_get_be32(k.mv_data) != iter->folder_id) {
		iter->done = true;
		return 0;
	}
	if (lmbox_msg_key_decode(k.mv_data, k.mv_size, &fid, &uid) < 0)
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: a message key of folder %u is malformed",
			store->mdb_path, iter->folder_id);
	if (iter->pending.next != UINT64_MAX &&
	    (rc = lmbox_pending_scan_has(store, &iter->pending, fid, uid)) != 0) {
		if (rc < 0)
			return rc;
		iter->last_uid = uid;
		goto next;
	}
	if (lmbox_msg_decode(v.mv_data, v.mv_size, meta_r) < 0) {
		/* One damaged record must not make the folder's other
		   messages unreachable: skip it, count it, and leave the
		   message for lmbox_msg_iter_corrupt() callers to report. */
		iter->corrupt++;
		iter->last_uid = uid;
		lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: the record of message uid %u in folder %u is malformed",
			store->mdb_path, uid, iter->folder_id);
		goto next;
	}
	meta_r->folder_id = fid;
	meta_r->uid = uid;
	iter->last_uid = uid;
	if (!iter->borrow && (rc = lmbox_reader_own_meta(iter->reader, meta_r)) < 0)
		return rc;
	return 1;
}

void lmbox_msg_iter_set_borrow(struct lmbox_msg_iter *iter)
{
	iter->borrow = true;
}

unsigned int lmbox_msg_iter_corrupt(const struct lmbox_msg_iter *iter)
{
	return iter->corrupt;
}

void lmbox_msg_iter_deinit(struct lmbox_msg_iter **_iter)
{
	struct lmbox_msg_iter *iter = *_iter;

	if (iter == NULL)
		return;
	*_iter = NULL;
	if (lmbox_same_process(iter->reader->store)) {
		mdb_cursor_close(iter->cursor);
		lmbox_pending_scan_close(&iter->pending);
	}
	free(iter);
}
