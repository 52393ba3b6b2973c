/*
 * lmbox-txn.c: write transactions.  Operations are only recorded in memory
 * until lmbox_txn_commit(), which replays them in order inside one LMDB
 * write transaction (lmbox_write): blobs are written at the committed tail
 * of the current segment, records and folder counters updated, and the
 * whole lot committed at once.  Because the replay is a pure function of
 * the recorded operations it can be retried after the map is grown.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmbox-private.h"

int lmbox_txn_begin(struct lmbox_store *store, struct lmbox_txn **txn_r)
{
	struct lmbox_txn *txn;
	int ret;

	*txn_r = NULL;
	if ((ret = lmbox_store_check_usable(store, true)) < 0)
		return ret;
	if ((txn = calloc(1, sizeof(*txn))) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	txn->store = store;
	*txn_r = txn;
	return 0;
}

void lmbox_pending_free(struct lmbox_pending *msg)
{
	if (msg == NULL)
		return;
	if (msg->spill_fd >= 0)
		close(msg->spill_fd);
	free(msg->data);
	free(msg->uidl);
	free(msg->keywords);
	free(msg);
}

/* Claims go only after the commit that recorded what was written under
 * them (or with the transaction, when nothing was). */
static void lmbox_txn_release_claims(struct lmbox_txn *txn)
{
	for (unsigned int i = 0; i < txn->claim_count; i++)
		close(txn->claims[i].fd);
	free(txn->claims);
	txn->claims = NULL;
	txn->claim_count = txn->claim_alloc = 0;
}

static void lmbox_txn_free(struct lmbox_txn *txn)
{
	lmbox_txn_release_claims(txn);
	lmbox_append_orphan_all(txn);
	for (unsigned int i = 0; i < txn->op_count; i++) {
		lmbox_pending_free(txn->ops[i].msg);
		free(txn->ops[i].keywords);
	}
	free(txn->ops);
	free(txn->uids);
	free(txn->uid_plans);
	free(txn);
}

void lmbox_txn_abort(struct lmbox_txn **_txn)
{
	if (*_txn == NULL)
		return;
	lmbox_txn_free(*_txn);
	*_txn = NULL;
}

int lmbox_txn_add_op(struct lmbox_txn *txn, const struct lmbox_op *op)
{
	if (lmbox_grow_array(&txn->ops, &txn->op_alloc, txn->op_count + 1,
			     sizeof(*txn->ops)) < 0)
		return lmbox_set_error(txn->store, LMBOX_ERR_NOMEM, "out of memory");
	txn->ops[txn->op_count++] = *op;
	return 0;
}

int lmbox_keywords_pack(struct lmbox_store *store, const char *const *keywords,
			char **packed_r, unsigned int *count_r)
{
	size_t size = 0, pos = 0;
	unsigned int count = 0;
	char *packed;

	*packed_r = NULL;
	*count_r = 0;
	if (keywords == NULL)
		return 0;
	for (; keywords[count] != NULL; count++) {
		size_t len = strlen(keywords[count]);

		if (len == 0 || len > LMBOX_MAX_KEYWORD_LEN || count >= LMBOX_MAX_KEYWORDS) {
			return lmbox_set_error(store, LMBOX_ERR_INVALID,
				"%s: keyword \"%.80s\" is empty, too long or one too many",
				store->dir, keywords[count]);
		}
		size += len + 1;
	}
	if (count == 0)
		return 0;
	if ((packed = malloc(size)) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	count = 0;
	for (unsigned int i = 0; keywords[i] != NULL; i++) {
		bool dup = false;

		for (const char *p = packed; p < packed + pos; p += strlen(p) + 1)
			dup = dup || strcmp(p, keywords[i]) == 0;
		if (dup)
			continue;
		memcpy(packed + pos, keywords[i], strlen(keywords[i]) + 1);
		pos += strlen(keywords[i]) + 1;
		count++;
	}
	*packed_r = packed;
	*count_r = count;
	return 0;
}

static int lmbox_txn_simple_op(struct lmbox_txn *txn, enum lmbox_op_type type,
			       uint32_t folder_id, uint32_t uid, struct lmbox_op *op)
{
	int ret;

	if ((ret = lmbox_store_check_usable(txn->store, true)) < 0)
		return ret;
	if (folder_id == 0 || uid == 0) {
		return lmbox_set_error(txn->store, LMBOX_ERR_INVALID,
			"%s: folder id and uid must be nonzero", txn->store->dir);
	}
	op->type = type;
	op->folder_id = folder_id;
	op->uid = uid;
	return lmbox_txn_add_op(txn, op);
}

int lmbox_txn_expunge(struct lmbox_txn *txn, uint32_t folder_id, uint32_t uid)
{
	struct lmbox_op op;

	memset(&op, 0, sizeof(op));
	return lmbox_txn_simple_op(txn, LMBOX_OP_EXPUNGE, folder_id, uid, &op);
}

int lmbox_txn_update_flags(struct lmbox_txn *txn, uint32_t folder_id, uint32_t uid,
			   enum lmbox_modify modify, uint8_t flags)
{
	struct lmbox_op op;

	if ((flags & ~LMBOX_FLAGS_MASK) != 0 || (unsigned int)modify > LMBOX_MODIFY_REMOVE) {
		return lmbox_set_error(txn->store, LMBOX_ERR_INVALID,
			"%s: bad flags 0x%x or modify %d", txn->store->dir, flags, (int)modify);
	}
	memset(&op, 0, sizeof(op));
	op.modify = (uint8_t)modify;
	op.flags = flags;
	return lmbox_txn_simple_op(txn, LMBOX_OP_FLAGS, folder_id, uid, &op);
}

int lmbox_txn_update_keywords(struct lmbox_txn *txn, uint32_t folder_id, uint32_t uid,
			      enum lmbox_modify modify, const char *const *keywords)
{
	struct lmbox_op op;
	int ret;

	if ((unsigned int)modify > LMBOX_MODIFY_REMOVE) {
		return lmbox_set_error(txn->store, LMBOX_ERR_INVALID, "%s: bad modify %d",
				       txn->store->dir, (int)modify);
	}
	memset(&op, 0, sizeof(op));
	op.modify = (uint8_t)modify;
	if ((ret = lmbox_keywords_pack(txn->store, keywords, &op.keywords, &op.kw_count)) < 0)
		return ret;
	if ((ret = lmbox_txn_simple_op(txn, LMBOX_OP_KEYWORDS, folder_id, uid, &op)) < 0)
		free(op.keywords);
	return ret;
}

int lmbox_txn_set_pop3_first_retr(struct lmbox_txn *txn, uint32_t folder_id,
				  uint32_t uid, int64_t when)
{
	struct lmbox_op op;

	memset(&op, 0, sizeof(op));
	op.when = when != 0 ? when : lmbox_now();
	return lmbox_txn_simple_op(txn, LMBOX_OP_POP3_RETR, folder_id, uid, &op);
}

static int lmbox_txn_seq_op(struct lmbox_txn *txn, enum lmbox_op_type type,
			    uint32_t src_folder, uint32_t uid, uint32_t dst_folder)
{
	struct lmbox_op op;
	int ret;

	if (dst_folder == 0) {
		return lmbox_set_error(txn->store, LMBOX_ERR_INVALID,
				       "%s: destination folder id 0", txn->store->dir);
	}
	memset(&op, 0, sizeof(op));
	op.dst_folder = dst_folder;
	op.seq = txn->seq_count;
	if ((ret = lmbox_txn_simple_op(txn, type, src_folder, uid, &op)) < 0)
		return ret;
	txn->seq_count++;
	return (int)op.seq;
}

int lmbox_txn_copy(struct lmbox_txn *txn, uint32_t src_folder, uint32_t uid,
		   uint32_t dst_folder)
{
	return lmbox_txn_seq_op(txn, LMBOX_OP_COPY, src_folder, uid, dst_folder);
}

int lmbox_txn_move(struct lmbox_txn *txn, uint32_t src_folder, uint32_t uid,
		   uint32_t dst_folder)
{
	return lmbox_txn_seq_op(txn, LMBOX_OP_MOVE, src_folder, uid, dst_folder);
}

/* ------------------------------------------------------------------ apply */

/* A message's strings copied out of the map: the record they point into
 * may move when other records are written. */
struct lmbox_meta_copy {
	struct lmbox_msg_meta meta;
	char uidl[LMBOX_MAX_UIDL_LEN + 1];
	char *keywords;
};

static int lmbox_meta_copy(struct lmbox_store *store, const struct lmbox_msg_meta *src,
			   struct lmbox_meta_copy *dst)
{
	size_t kw_size = lmbox_keywords_size(src->keywords, src->kw_count);

	dst->meta = *src;
	snprintf(dst->uidl, sizeof(dst->uidl), "%s", src->uidl);
	dst->meta.uidl = dst->uidl;
	dst->keywords = NULL;
	if (kw_size > 0) {
		if ((dst->keywords = malloc(kw_size)) == NULL)
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
		memcpy(dst->keywords, src->keywords, kw_size);
		dst->meta.keywords = dst->keywords;
	}
	return 0;
}

/* A message record, unless an expunge earlier in this commit made it
 * pending (then LMBOX_ERR_NOTFOUND, as if it had been deleted). */
static int lmbox_msg_load_live(struct lmbox_wctx *ctx, uint32_t folder_id, uint32_t uid,
			       struct lmbox_msg_meta *meta_r)
{
	struct lmbox_store *store = ctx->store;
	int ret;

	/* "pending" was empty when the transaction began, and holds
	 * nothing above pending_last: the usual ascending expunges need no
	 * lookup */
	if ((ret = lmbox_msg_load(store, ctx->txn, folder_id, uid, meta_r)) < 0 ||
	    ctx->pending_added == 0 ||
	    (((uint64_t)folder_id << 32) | uid) > ctx->pending_last)
		return ret;
	if ((ret = lmbox_pending_get(store, ctx->txn, folder_id, uid)) <= 0)
		return ret;
	return lmbox_msg_read_error(store, MDB_NOTFOUND, folder_id, uid);
}

/* UID assignment follows Dovecot's rule for a commit, so that dsync's
   wanted UIDs come out the same on both replicas: a wanted UID at or above
   the folder's next UID as it was when the commit started is honoured;
   every other message is numbered after the highest honoured one. */
struct lmbox_uid_plan {
	uint32_t folder_id;
	uint32_t start_next;   /* folder's next_uid when the commit started */
	uint32_t next_free;    /* next UID for a message without a wanted one */
};

static struct lmbox_uid_plan *
lmbox_uid_plan_get(struct lmbox_txn *txn, const struct lmbox_folder_info *folder)
{
	struct lmbox_uid_plan *plan;

	for (unsigned int i = 0; i < txn->uid_plan_count; i++) {
		if (txn->uid_plans[i].folder_id == folder->id)
			return &txn->uid_plans[i];
	}
	if (lmbox_grow_array(&txn->uid_plans, &txn->uid_plan_alloc,
			     txn->uid_plan_count + 1, sizeof(*plan)) < 0)
		return NULL;
	plan = &txn->uid_plans[txn->uid_plan_count++];
	plan->folder_id = folder->id;
	plan->start_next = folder->next_uid;
	plan->next_free = folder->next_uid;
	for (unsigned int i = 0; i < txn->op_count; i++) {
		const struct lmbox_op *op = &txn->ops[i];
		uint32_t want;

		if (op->type != LMBOX_OP_APPEND || op->folder_id != folder->id)
			continue;
		want = op->msg->want_uid;
		if (want >= plan->start_next && want < UINT32_MAX && want >= plan->next_free)
			plan->next_free = want + 1;
	}
	return plan;
}

static int lmbox_assign_uid(struct lmbox_wctx *ctx, struct lmbox_txn *txn,
			    struct lmbox_folder_info *folder,
			    uint32_t want, uint32_t *uid_r)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_uid_plan *plan;
	struct lmbox_msg_meta existing;
	uint32_t uid;
	int ret;

	if ((plan = lmbox_uid_plan_get(txn, folder)) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	uid = 0;
	if (want != 0 && want >= plan->start_next && want < UINT32_MAX) {
		/* honoured unless an earlier message of this commit took it */
		ret = lmbox_msg_load(store, ctx->txn, folder->id, want, &existing);
		if (ret == LMBOX_ERR_NOTFOUND)
			uid = want;
		else if (ret < 0)
			return ret;
	}
	if (uid == 0)
		uid = plan->next_free++;
	if (uid == 0 || uid == UINT32_MAX) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: folder \"%s\" has run out of UIDs", store->dir, folder->name);
	}
	if (uid >= folder->next_uid)
		folder->next_uid = uid + 1;
	*uid_r = uid;
	return 0;
}

static void lmbox_pending_blob_hdr(const struct lmbox_pending *msg, struct lmbox_blob_hdr *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->codec = msg->codec;
	hdr->phys_size = msg->phys_size;
	hdr->stored_size = msg->stored_size;
	hdr->checksum = msg->checksum;
}

static int lmbox_apply_append(struct lmbox_wctx *ctx, struct lmbox_txn *txn,
			      const struct lmbox_op *op)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_pending *msg = op->msg;
	struct lmbox_folder_info folder;
	struct lmbox_msg_meta meta;
	struct lmbox_blob_hdr hdr;
	char uidl[LMBOX_MAX_UIDL_LEN + 1];
	int ret;

	if ((ret = lmbox_folder_load(store, ctx->txn, op->folder_id, &folder)) < 0)
		return ret;
	memset(&meta, 0, sizeof(meta));
	if ((ret = lmbox_assign_uid(ctx, txn, &folder, msg->want_uid, &meta.uid)) < 0)
		return ret;
	if (msg->uidl != NULL)
		snprintf(uidl, sizeof(uidl), "%s", msg->uidl);
	else
		snprintf(uidl, sizeof(uidl), "%08x%08x", meta.uid, folder.uidvalidity);
	lmbox_pending_blob_hdr(msg, &hdr);
	ret = msg->pre_seg == 0 ? 1 :
		lmbox_wseg_adopt(ctx, &hdr, msg->pre_seg, msg->pre_offset, folder.id, meta.uid);
	if (ret == 0) {
		meta.seg_id = msg->pre_seg;
		meta.seg_offset = msg->pre_offset;
	} else if (ret > 0) {
		ret = lmbox_wseg_append(ctx, &hdr, msg->spill_fd >= 0 ? NULL :
					msg->data != NULL ? (const void *)msg->data : "",
					msg->spill_fd, 0, folder.id, meta.uid,
					&meta.seg_id, &meta.seg_offset);
	}
	if (ret < 0)
		return ret;
	meta.pop3_order = msg->pop3_order;
	meta.flags = msg->flags;
	meta.codec = msg->codec;
	meta.received_date = msg->received_date;
	meta.save_date = msg->save_date;
	meta.phys_size = msg->phys_size;
	meta.virt_size = msg->virt_size;
	meta.stored_size = msg->stored_size;
	meta.checksum = msg->checksum;
	memcpy(meta.guid, msg->guid, LMBOX_GUID_SIZE);
	meta.uidl = uidl;
	meta.keywords = msg->keywords != NULL ? msg->keywords : "";
	meta.kw_count = msg->kw_count;
	if ((ret = lmbox_msg_add(ctx, &folder, &meta)) < 0 ||
	    (ret = lmbox_folder_save(store, ctx->txn, &folder)) < 0)
		return ret;
	txn->uids[op->seq] = meta.uid;
	return 0;
}

static int lmbox_apply_expunge(struct lmbox_wctx *ctx, struct lmbox_txn *txn,
			       const struct lmbox_op *op)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info folder;
	struct lmbox_msg_meta meta;
	int ret;

	ret = lmbox_folder_load(store, ctx->txn, op->folder_id, &folder);
	if (ret == 0)
		ret = lmbox_msg_load_live(ctx, op->folder_id, op->uid, &meta);
	if (ret == LMBOX_ERR_NOTFOUND)
		return 0; /* already gone: nothing to do */
	if (ret < 0)
		return ret;
	if ((ret = lmbox_msg_remove(ctx, &folder, &meta, false)) < 0 ||
	    (ret = lmbox_folder_save(store, ctx->txn, &folder)) < 0)
		return ret;
	txn->expunged++;
	return 0;
}

/* A run of expunges that go to "pending" (txn->ops[*i] on): each folder
 * record is loaded and saved once per run of its messages, not once per
 * message, and the records are looked up with one cursor, which LMDB
 * moves within the current leaf when the next key is there (UIDs come in
 * order).  Ends at the first other operation; *i is left on it. */
static int lmbox_apply_expunge_run(struct lmbox_wctx *ctx, struct lmbox_txn *txn,
				   unsigned int *i)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info folder;
	struct lmbox_msg_meta meta;
	unsigned char key[8];
	MDB_cursor *cur;
	MDB_val k, v;
	bool have_folder = false, folder_gone = false;
	int rc, ret = 0;

	if ((rc = mdb_cursor_open(ctx->txn, store->env->dbi_msgs, &cur)) != 0)
		return lmbox_set_mdb_error(store, rc, "%s: cursor", store->dir);
	for (; *i < txn->op_count && txn->ops[*i].type == LMBOX_OP_EXPUNGE; (*i)++) {
		const struct lmbox_op *op = &txn->ops[*i];
		uint64_t key64 = ((uint64_t)op->folder_id << 32) | op->uid;

		if ((have_folder || folder_gone) && folder.id != op->folder_id) {
			if (have_folder &&
			    (ret = lmbox_folder_save(store, ctx->txn, &folder)) < 0)
				break;
			have_folder = folder_gone = false;
		}
		if (!have_folder && !folder_gone) {
			ret = lmbox_folder_load(store, ctx->txn, op->folder_id, &folder);
			if (ret == LMBOX_ERR_NOTFOUND) {
				folder.id = op->folder_id;
				folder_gone = true;
				ret = 0;
			} else if (ret < 0) {
				break;
			} else {
				have_folder = true;
			}
		}
		if (folder_gone)
			continue; /* already gone: nothing to do */
		/* expunged earlier in this commit (keys above pending_last
		 * cannot be: "pending" was empty when it began) */
		if (ctx->pending_added > 0 && key64 <= ctx->pending_last) {
			if ((ret = lmbox_pending_get(store, ctx->txn, op->folder_id,
						     op->uid)) < 0)
				break;
			if (ret > 0) {
				ret = 0;
				continue;
			}
		}
		lmbox_msg_key_encode(key, op->folder_id, op->uid);
		k.mv_data = key;
		k.mv_size = sizeof(key);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
		if (rc == MDB_NOTFOUND)
			continue; /* already gone */
		if (rc != 0) {
			ret = lmbox_msg_read_error(store, rc, op->folder_id, op->uid);
			break;
		}
		if (lmbox_msg_decode(v.mv_data, v.mv_size, &meta) < 0) {
			ret = lmbox_msg_corrupt_error(store, op->folder_id, op->uid);
			break;
		}
		meta.folder_id = op->folder_id;
		meta.uid = op->uid;
		if ((ret = lmbox_pending_add(ctx, &folder, &meta)) < 0)
			break;
		txn->expunged++;
	}
	mdb_cursor_close(cur);
	if (ret == 0 && have_folder)
		ret = lmbox_folder_save(store, ctx->txn, &folder);
	return ret;
}

static int lmbox_keywords_modify(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
				 const struct lmbox_op *op, char **packed_r,
				 unsigned int *count_r)
{
	size_t old_size = lmbox_keywords_size(meta->keywords, meta->kw_count);
	size_t op_size = lmbox_keywords_size(op->keywords, op->kw_count);
	char *out = malloc(old_size + op_size + 1);
	size_t pos = 0;
	unsigned int count = 0;
	const char *p, *q;

	if (out == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	/* keep old ones unless replaced or removed */
	if (op->modify != LMBOX_MODIFY_REPLACE) {
		p = meta->keywords;
		for (unsigned int i = 0; i < meta->kw_count; i++, p += strlen(p) + 1) {
			bool listed = false;

			q = op->keywords;
			for (unsigned int j = 0; j < op->kw_count; j++, q += strlen(q) + 1)
				listed = listed || strcmp(p, q) == 0;
			if (op->modify == LMBOX_MODIFY_REMOVE && listed)
				continue;
			memcpy(out + pos, p, strlen(p) + 1);
			pos += strlen(p) + 1;
			count++;
		}
	}
	if (op->modify != LMBOX_MODIFY_REMOVE) {
		q = op->keywords;
		for (unsigned int j = 0; j < op->kw_count; j++, q += strlen(q) + 1) {
			bool have = false;

			for (p = out; p < out + pos; p += strlen(p) + 1)
				have = have || strcmp(p, q) == 0;
			if (have)
				continue;
			memcpy(out + pos, q, strlen(q) + 1);
			pos += strlen(q) + 1;
			count++;
		}
	}
	if (count > LMBOX_MAX_KEYWORDS || pos > 65535) {
		free(out);
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: too many keywords on uid %u in folder %u", store->dir,
			meta->uid, meta->folder_id);
	}
	*packed_r = out;
	*count_r = count;
	return 0;
}

/* Flags, keywords, POP3 first retrieval: rewrite the record in place. */
static int lmbox_apply_modify(struct lmbox_wctx *ctx, const struct lmbox_op *op)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info folder;
	struct lmbox_msg_meta meta;
	char *keywords = NULL;
	int ret;

	ret = lmbox_msg_load_live(ctx, op->folder_id, op->uid, &meta);
	if (ret == LMBOX_ERR_NOTFOUND)
		return 0;
	if (ret < 0)
		return ret;
	switch (op->type) {
	case LMBOX_OP_FLAGS:
		if (op->modify == LMBOX_MODIFY_REPLACE)
			meta.flags = op->flags;
		else if (op->modify == LMBOX_MODIFY_ADD)
			meta.flags |= op->flags;
		else
			meta.flags &= ~op->flags;
		break;
	case LMBOX_OP_KEYWORDS:
		if ((ret = lmbox_keywords_modify(store, &meta, op, &keywords,
						 &meta.kw_count)) < 0)
			return ret;
		meta.keywords = keywords;
		break;
	case LMBOX_OP_POP3_RETR:
		if (meta.pop3_first_retr != 0)
			return 0;
		meta.pop3_first_retr = op->when;
		break;
	default:
		break;
	}
	ret = lmbox_msg_save(store, ctx->txn, &meta, false);
	free(keywords);
	if (ret < 0)
		return ret;
	if ((ret = lmbox_wctx_touch_folder(ctx, op->folder_id)) <= 0)
		return ret;
	/* first change of this folder in this commit */
	if ((ret = lmbox_folder_load(store, ctx->txn, op->folder_id, &folder)) < 0)
		return ret;
	folder.change_counter++;
	return lmbox_folder_save(store, ctx->txn, &folder);
}

static int lmbox_apply_copy_move(struct lmbox_wctx *ctx, struct lmbox_txn *txn,
				 const struct lmbox_op *op)
{
	struct lmbox_store *store = ctx->store;
	struct lmbox_folder_info src_folder, dst_folder;
	struct lmbox_msg_meta meta;
	struct lmbox_meta_copy copy;
	struct lmbox_blob_hdr hdr;
	unsigned char hbuf[LMBOX_BLOB_HDR_SIZE];
	bool move = op->type == LMBOX_OP_MOVE;
	int ret, fd = -1;

	ret = lmbox_folder_load(store, ctx->txn, op->folder_id, &src_folder);
	if (ret == 0)
		ret = lmbox_msg_load_live(ctx, op->folder_id, op->uid, &meta);
	if (ret == LMBOX_ERR_NOTFOUND) {
		txn->uids[op->seq] = 0; /* source vanished */
		return 0;
	}
	if (ret < 0 || (ret = lmbox_meta_copy(store, &meta, &copy)) < 0)
		return ret;
	if (move) {
		if ((ret = lmbox_msg_remove(ctx, &src_folder, &copy.meta, true)) < 0 ||
		    (ret = lmbox_folder_save(store, ctx->txn, &src_folder)) < 0)
			goto out;
	}
	if ((ret = lmbox_folder_load(store, ctx->txn, op->dst_folder, &dst_folder)) < 0 ||
	    (ret = lmbox_assign_uid(ctx, txn, &dst_folder, 0, &copy.meta.uid)) < 0)
		goto out;
	if (move) {
		ret = lmbox_wseg_blob_owner(ctx, copy.meta.seg_id, copy.meta.seg_offset,
					    copy.meta.stored_size, dst_folder.id, copy.meta.uid);
		if (ret < 0)
			goto out;
	} else {
		/* a copy owns its own blob, so expunging one never affects
		 * the other */
		char what[128];

		snprintf(what, sizeof(what), "%s/seg/%08X", store->dir, copy.meta.seg_id);
		if ((ret = lmbox_seg_open_read(store, copy.meta.seg_id, &fd)) < 0 ||
		    (ret = lmbox_pread_full(store, fd, hbuf, sizeof(hbuf),
					    copy.meta.seg_offset, what)) < 0)
			goto out;
		if (lmbox_blob_hdr_decode(hbuf, sizeof(hbuf), &hdr) < 0 ||
		    hdr.stored_size != copy.meta.stored_size ||
		    hdr.phys_size != copy.meta.phys_size || hdr.codec != copy.meta.codec) {
			ret = lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s: cannot copy uid %u of folder %u: bad blob header at %llu",
				what, op->uid, op->folder_id,
				(unsigned long long)copy.meta.seg_offset);
			goto out;
		}
		ret = lmbox_wseg_append(ctx, &hdr, NULL, fd,
					copy.meta.seg_offset + LMBOX_BLOB_HDR_SIZE,
					dst_folder.id, copy.meta.uid,
					&copy.meta.seg_id, &copy.meta.seg_offset);
		if (ret < 0)
			goto out;
	}
	if ((ret = lmbox_msg_add(ctx, &dst_folder, &copy.meta)) < 0 ||
	    (ret = lmbox_folder_save(store, ctx->txn, &dst_folder)) < 0)
		goto out;
	txn->uids[op->seq] = copy.meta.uid;
out:
	if (fd >= 0)
		close(fd);
	free(copy.keywords);
	return ret;
}

static int lmbox_txn_apply(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_txn *txn = context;
	int ret = 0;

	/* a retry starts from scratch */
	txn->uid_plan_count = 0;
	if (txn->seq_count > 0)
		memset(txn->uids, 0, sizeof(*txn->uids) * txn->seq_count);
	txn->expunged = 0;
	for (unsigned int i = 0; i < txn->op_count && ret == 0; i++) {
		const struct lmbox_op *op = &txn->ops[i];

		if (op->type == LMBOX_OP_EXPUNGE && txn->pending_mode) {
			ret = lmbox_apply_expunge_run(ctx, txn, &i);
			i--; /* on the first other operation */
			continue;
		}
		switch (op->type) {
		case LMBOX_OP_APPEND:
			ret = lmbox_apply_append(ctx, txn, op);
			break;
		case LMBOX_OP_EXPUNGE:
			ret = lmbox_apply_expunge(ctx, txn, op);
			break;
		case LMBOX_OP_FLAGS:
		case LMBOX_OP_KEYWORDS:
		case LMBOX_OP_POP3_RETR:
			ret = lmbox_apply_modify(ctx, op);
			break;
		case LMBOX_OP_COPY:
		case LMBOX_OP_MOVE:
			ret = lmbox_apply_copy_move(ctx, txn, op);
			break;
		}
	}
	if (ret == 0)
		ret = lmbox_wseg_seal_claims(ctx, txn->claims, txn->claim_count);
	return ret;
}

/* Test hook: tests/fault kill a writer here, between its bodies' sync and
 * its commit. */
static void lmbox_txn_prepared_hook(void)
{
	const char *p = getenv("LMBOX_TEST_KILL_AFTER_PREPARE");

	if (p != NULL && *p != '\0')
		(void)raise(SIGKILL);
}

void lmbox_txn_defer_sync(struct lmbox_txn *txn)
{
	txn->defer_sync = true;
}

int lmbox_txn_prepare(struct lmbox_txn *txn)
{
	struct lmbox_store *store = txn->store;
	struct lmbox_blob_hdr hdr;
	struct lmbox_claim claim, *c;
	bool wrote = false;
	char what[4096];
	int ret;

	if ((ret = lmbox_store_check_usable(store, true)) < 0)
		return ret;
	for (unsigned int i = 0; i < txn->op_count; i++) {
		struct lmbox_pending *msg = txn->ops[i].msg;
		uint64_t len;

		if (txn->ops[i].type != LMBOX_OP_APPEND || msg->pre_seg != 0)
			continue;
		len = LMBOX_BLOB_HDR_SIZE + msg->stored_size;
		c = NULL;
		for (unsigned int j = 0; j < txn->claim_count && c == NULL; j++) {
			struct lmbox_claim *cj = &txn->claims[j];

			if (!cj->full && (cj->end == LMBOX_SEG_HDR_SIZE ||
					  cj->end + len <= store->opts.segment_max))
				c = cj;
		}
		while (c == NULL) {
			ret = lmbox_seg_claim(store, txn->claims, txn->claim_count, len, &claim);
			if (ret < 0)
				return ret;
			if (ret == 0)
				break; /* all claimed by others: the commit makes one */
			if (lmbox_grow_array(&txn->claims, &txn->claim_alloc,
					     txn->claim_count + 1, sizeof(*txn->claims)) < 0) {
				close(claim.fd);
				return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			}
			if (claim.full && claim.end < store->opts.segment_max / 2) {
				/* a big blob: not worth sealing a segment
				 * for; the commit starts a new one */
				close(claim.fd);
				break;
			}
			txn->claims[txn->claim_count++] = claim;
			if (!claim.full)
				c = &txn->claims[txn->claim_count - 1];
		}
		if (c == NULL)
			break;
		lmbox_pending_blob_hdr(msg, &hdr);
		lmbox_seg_path(store, c->seg_id, what, sizeof(what));
		ret = lmbox_seg_write_blob(store, c->fd, what, &hdr,
					   msg->spill_fd >= 0 ? NULL :
					   msg->data != NULL ? (const void *)msg->data : "",
					   msg->spill_fd, 0, c->end);
		if (ret < 0)
			return ret;
		msg->pre_seg = c->seg_id;
		msg->pre_offset = c->end;
		c->end += len;
		c->dirty = true;
		wrote = true;
	}
	if (!wrote)
		return 0;
	for (unsigned int i = 0; i < txn->claim_count; i++) {
		c = &txn->claims[i];
		if (!c->dirty)
			continue;
		if (store->opts.fsync != LMBOX_FSYNC_NEVER && fdatasync(c->fd) < 0) {
			lmbox_seg_path(store, c->seg_id, what, sizeof(what));
			return lmbox_set_errno(store, errno, "fdatasync(%s) failed", what);
		}
		c->dirty = false;
	}
	lmbox_txn_prepared_hook();
	return 0;
}

int lmbox_txn_commit(struct lmbox_txn **_txn, struct lmbox_commit_result *result)
{
	struct lmbox_txn *txn = *_txn;
	int ret = 0;

	*_txn = NULL;
	if (result != NULL)
		memset(result, 0, sizeof(*result));
	if (txn == NULL)
		return LMBOX_ERR_INVALID;
	if (txn->seq_count > 0 &&
	    (txn->uids = calloc(txn->seq_count, sizeof(*txn->uids))) == NULL) {
		ret = lmbox_set_error(txn->store, LMBOX_ERR_NOMEM, "out of memory");
	} else if (txn->op_count > 0) {
		unsigned int expunges = 0;

		for (unsigned int i = 0; i < txn->op_count; i++)
			expunges += txn->ops[i].type == LMBOX_OP_EXPUNGE ? 1 : 0;
		txn->pending_mode = lmbox_pending_wanted(txn->store, expunges);
		ret = lmbox_txn_prepare(txn);
		if (ret == 0) {
			txn->store->defer_sync = txn->defer_sync;
			ret = lmbox_write(txn->store, lmbox_txn_apply, txn);
			txn->store->defer_sync = false;
		}
	} else {
		ret = lmbox_store_check_usable(txn->store, true);
	}
	if (ret == 0 && result != NULL) {
		result->uids = txn->uids;
		result->uid_count = txn->seq_count;
		result->expunged = txn->expunged;
		txn->uids = NULL;
	}
	/* new messages: maybe the store has enough to train its dictionary */
	if (ret == 0 && txn->seq_count > 0) {
		uint64_t bytes = 0;

		for (unsigned int i = 0; i < txn->op_count; i++) {
			if (txn->ops[i].type == LMBOX_OP_APPEND && txn->ops[i].msg != NULL)
				bytes += txn->ops[i].msg->stored_size + LMBOX_BLOB_HDR_SIZE;
		}
		lmbox_sdict_maybe_train(txn->store, txn->seq_count, bytes);
	}
	lmbox_txn_free(txn);
	return ret;
}

void lmbox_commit_result_free(struct lmbox_commit_result *result)
{
	if (result == NULL)
		return;
	free(result->uids);
	result->uids = NULL;
	result->uid_count = 0;
}
