/*
 * lmbox-copy.c: COPY and MOVE into an lmbox mailbox.
 *
 * Between folders of the same store, a copy or move is a store operation
 * (lmbox_txn_copy / lmbox_txn_move) in the destination's store
 * transaction: no body is read, and a MOVE is atomic in the store.  This
 * is done only when the message keeps what the store would give it
 * anyway (same flags and keywords, no new GUID, UID, UIDL or date);
 * everything else, and copies from other storages, go through the
 * generic save path, which reads the source body.
 */
#include "lib.h"
#include "array.h"
#include "mail-copy.h"
#include "index-mail.h"
#include "lmbox-storage.h"

/* Do the save context's keywords (indexes into dest's index) equal the
   store keywords of meta? */
static bool
lmbox_copy_keywords_equal(struct mailbox *dest,
			  const struct mail_keywords *kw,
			  const struct lmbox_msg_meta *meta)
{
	const ARRAY_TYPE(keywords) *names = mail_index_get_keywords(dest->index);
	const char *name, *skw;
	unsigned int i, count = kw == NULL ? 0 : kw->count;
	bool found;

	if (count != meta->kw_count)
		return FALSE;
	for (i = 0; i < count; i++) {
		if (kw->idx[i] >= array_count(names))
			return FALSE;
		name = array_idx_elem(names, kw->idx[i]);
		found = FALSE;
		for (skw = lmbox_meta_next_keyword(meta, NULL); skw != NULL;
		     skw = lmbox_meta_next_keyword(meta, skw)) {
			if (strcmp(skw, name) == 0) {
				found = TRUE;
				break;
			}
		}
		if (!found)
			return FALSE;
	}
	return TRUE;
}

/* Returns 1 copied in the store, 0 use the generic path, -1 error. */
static int lmbox_copy_in_store(struct mail_save_context *ctx, struct mail *mail)
{
	struct mailbox *dest_box = ctx->transaction->box;
	struct lmbox_mailbox *dest = LMBOX_MAILBOX(dest_box);
	struct mail_save_data *mdata = &ctx->data;
	struct lmbox_mailbox *src;
	struct mail *backend_mail;
	struct lmbox_msg_meta meta;
	struct lmbox_txn *txn;
	int ret;

	if (mail_get_backend_mail(mail, &backend_mail) < 0)
		return -1;
	if (!lmbox_is_lmbox_mailbox(backend_mail->box) ||
	    backend_mail->saving || backend_mail->uid == 0)
		return 0;
	src = LMBOX_MAILBOX(backend_mail->box);
	if (src->storage->store != dest->storage->store)
		return 0;
	if (mdata->guid != NULL || mdata->uid != 0 ||
	    mdata->pop3_uidl != NULL || mdata->pop3_order != 0 ||
	    mdata->min_modseq != 0)
		return 0;

	ret = lmbox_mailbox_msg_lookup(src, backend_mail->uid, &meta);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		mail_set_expunged(backend_mail);
		return -1;
	}
	if ((mdata->flags & MAIL_FLAGS_NONRECENT) !=
	    (meta.flags & MAIL_FLAGS_NONRECENT) ||
	    !lmbox_copy_keywords_equal(dest_box, mdata->keywords, &meta) ||
	    (mdata->received_date != (time_t)-1 &&
	     mdata->received_date != (time_t)meta.received_date) ||
	    (mdata->save_date != (time_t)-1 &&
	     mdata->save_date != (time_t)meta.save_date))
		return 0;

	if ((txn = lmbox_save_get_txn(ctx)) == NULL)
		return -1;
	if (ctx->moving) {
		ret = lmbox_txn_move(txn, src->folder_id, backend_mail->uid,
				     dest->folder_id);
	} else {
		ret = lmbox_txn_copy(txn, src->folder_id, backend_mail->uid,
				     dest->folder_id);
	}
	if (ret < 0) {
		lmbox_storage_set_error(dest_box->storage, ret,
			ctx->moving ? "moving message" : "copying message");
		return -1;
	}
	lmbox_save_add_copied(ctx, mail, (unsigned int)ret, meta.pop3_order,
			      meta.virt_size);
	return 1;
}

int lmbox_copy(struct mail_save_context *ctx, struct mail *mail)
{
	int ret;

	lmbox_save_set_finished(ctx);
	T_BEGIN {
		ret = lmbox_copy_in_store(ctx, mail);
	} T_END;
	if (ret > 0)
		return 0;
	if (ret < 0) {
		index_save_context_free(ctx);
		return -1;
	}
	/* A UIDL is the message's identity for POP3 clients: a copy made
	   through the generic save path (e.g. dsync renumbering a message on
	   a UID conflict, which moves it within its mailbox) keeps it. */
	if (ctx->data.pop3_uidl == NULL) {
		const char *uidl;

		if (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &uidl) == 0 &&
		    *uidl != '\0')
			mailbox_save_set_pop3_uidl(ctx, uidl);
	}
	return mail_storage_copy(ctx, mail);
}
