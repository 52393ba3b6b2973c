/*
 * pop3-lmbox-retention.c: per-message first retrieval times and
 * leave-on-server expiry (lmbox_pop3_expire) for the POP3 session's INBOX.
 *
 * A RETR is seen where pop3 opens the message body for it (lib-storage
 * tells why a stream is opened: "RETR"; TOP does not count).  The session
 * collects (UID, time) pairs and writes them, in one store transaction,
 * whenever pop3 commits its mailbox transaction (QUIT, the idle commit,
 * the end of a dropped session); the store keeps only the first time per
 * message (lmbox_txn_set_pop3_first_retr).  The commit goes through
 * lmbox_plugin_mailbox_commit_txn(), so the index still mirrors the store
 * and the next login's sync stays O(1).
 *
 * Expiry runs only inside the commit of QUIT (pop3's quit_seen): the
 * messages the store says were first retrieved more than N days ago
 * (N = 0: all retrieved ones, including this session's RETRs) are added as
 * mail_expunge()s to that same transaction, beside the session's DELEs, so
 * the lmbox plugin's QUIT sync deletes them all in one store transaction.
 * A session that ends without QUIT expunges nothing.  Only messages the
 * session's view contains are candidates; a message already DELEd is left
 * to its DELE.  With pop3_delete_type = flag, expiry sets the
 * pop3_deleted_flag keyword instead, like a DELE.
 *
 * Cost: nothing at login; at QUIT with expiry on, one ordered walk over
 * the folder's store metadata (no bodies), plus a lookup per expired
 * message.
 */
#include "lib.h"
#include "array.h"
#include "seq-range-array.h"
#include "pop3-lmbox-plugin.h"

#define POP3_LMBOX_BOX_CONTEXT(obj) \
	MODULE_CONTEXT(obj, pop3_lmbox_storage_module)
#define POP3_LMBOX_MAIL_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, pop3_lmbox_mail_module)

struct pop3_lmbox_mailbox {
	union mailbox_module_context module_ctx;
	struct pop3_lmbox_client *pclient;
};

static MODULE_CONTEXT_DEFINE_INIT(pop3_lmbox_storage_module,
				  &mail_storage_module_register);
static MODULE_CONTEXT_DEFINE_INIT(pop3_lmbox_mail_module,
				  &mail_module_register);

/* --------------------------------------------------------- RETR tracking */

static void pop3_lmbox_retr_add(struct pop3_lmbox_client *pclient, uint32_t uid)
{
	const struct pop3_lmbox_retr *r;
	struct pop3_lmbox_retr *new_r;

	array_foreach(&pclient->retrs, r) {
		if (r->uid == uid)
			return;
	}
	new_r = array_append_space(&pclient->retrs);
	new_r->uid = uid;
	new_r->when = pop3_lmbox_now(pclient);
}

static int
pop3_lmbox_mail_get_stream(struct mail *_mail, bool get_body,
			   struct message_size *hdr_size,
			   struct message_size *body_size,
			   struct istream **stream_r)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	union mail_module_context *pmail = POP3_LMBOX_MAIL_CONTEXT(mail);
	struct pop3_lmbox_mailbox *pbox = POP3_LMBOX_BOX_CONTEXT(_mail->box);
	const char *reason = mail->get_stream_reason;

	if (pmail->super.get_stream(_mail, get_body, hdr_size, body_size,
				    stream_r) < 0)
		return -1;
	/* pop3's fetch() asks with reason "RETR" or "TOP" */
	if (get_body && pbox != NULL && reason != NULL &&
	    strcmp(reason, "RETR") == 0)
		pop3_lmbox_retr_add(pbox->pclient, _mail->uid);
	return 0;
}

void pop3_lmbox_mail_allocated(struct mail *_mail)
{
	struct pop3_lmbox_mailbox *pbox = POP3_LMBOX_BOX_CONTEXT(_mail->box);
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mail_vfuncs *v = mail->vlast;
	union mail_module_context *pmail;

	if (pbox == NULL)
		return;
	pmail = p_new(mail->pool, union mail_module_context, 1);
	pmail->super = *v;
	mail->vlast = &pmail->super;
	v->get_stream = pop3_lmbox_mail_get_stream;
	MODULE_CONTEXT_SET_SELF(mail, pop3_lmbox_mail_module, pmail);
}

/* ---------------------------------------------------------------- expiry */

static bool pop3_lmbox_is_expired(struct pop3_lmbox_client *pclient,
				  int64_t first_retr, int64_t now)
{
	if (first_retr == 0)
		return FALSE;
	if (pclient->expire_days == 0)
		return TRUE;
	return now - first_retr > (int64_t)pclient->expire_days * 24 * 3600;
}

/* UIDs the store says are expired, in UID order. */
static int
pop3_lmbox_expired_uids(struct pop3_lmbox_client *pclient,
			struct lmbox_store *store, uint32_t folder_id,
			int64_t now, ARRAY_TYPE(seq_range) *uids)
{
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	int ret;

	if ((ret = lmbox_reader_begin(store, &reader)) < 0)
		return ret;
	if ((ret = lmbox_msg_iter_init(reader, folder_id, 1, &iter)) < 0) {
		lmbox_reader_end(&reader);
		return ret;
	}
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		if (pop3_lmbox_is_expired(pclient, meta.pop3_first_retr, now))
			seq_range_array_add(uids, meta.uid);
	}
	lmbox_msg_iter_deinit(&iter);
	lmbox_reader_end(&reader);
	return ret;
}

/* Sequences the session DELEd (pop3 expunges those itself). */
static void pop3_lmbox_deleted_seqs(struct client *client,
				    ARRAY_TYPE(seq_range) *seqs)
{
	unsigned int msgnum;
	uint32_t seq;

	if (!client->deleted)
		return;
	for (msgnum = 0; msgnum < client->messages_count; msgnum++) {
		if ((client->deleted_bitmask[msgnum / CHAR_BIT] &
		     (1 << (msgnum % CHAR_BIT))) == 0)
			continue;
		seq = msgnum < client->msgnum_to_seq_map_count ?
			client->msgnum_to_seq_map[msgnum] : msgnum + 1;
		seq_range_array_add(seqs, seq);
	}
}

/* Add the expunges of expired messages to pop3's QUIT transaction; returns
   how many were added. */
static unsigned int
pop3_lmbox_expire(struct pop3_lmbox_client *pclient,
		  struct mailbox_transaction_context *t,
		  ARRAY_TYPE(seq_range) *expunged_uids)
{
	struct client *client = pclient->client;
	struct mail_user *user = client->user;
	ARRAY_TYPE(seq_range) deleted_seqs;
	struct seq_range_iter iter;
	const struct pop3_lmbox_retr *r;
	struct lmbox_store *store;
	struct mail *mail;
	uint32_t folder_id, uid;
	unsigned int n, count = 0;
	int64_t now = pop3_lmbox_now(pclient);
	int ret;

	store = lmbox_plugin_mailbox_get_store(t->box, &folder_id);
	if (store == NULL)
		return 0;
	ret = pop3_lmbox_expired_uids(pclient, store, folder_id, now,
				      expunged_uids);
	if (ret < 0) {
		e_error(user->event, "pop3_lmbox: expiry skipped: "
			"reading the store failed: %s",
			lmbox_store_errmsg(store));
		array_clear(expunged_uids);
		return 0;
	}
	if (pclient->expire_days == 0) {
		/* first retrieved by this session: now, so expired too */
		array_foreach(&pclient->retrs, r)
			seq_range_array_add(expunged_uids, r->uid);
	}
	if (array_count(expunged_uids) == 0)
		return 0;

	t_array_init(&deleted_seqs, 8);
	pop3_lmbox_deleted_seqs(client, &deleted_seqs);

	mail = mail_alloc(t, 0, NULL);
	seq_range_array_iter_init(&iter, expunged_uids); n = 0;
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		if (!mail_set_uid(mail, uid))
			continue; /* not in the session's view */
		if (seq_range_exists(&deleted_seqs, mail->seq))
			continue;
		if (client->set->parsed_delete_type == POP3_DELETE_TYPE_FLAG &&
		    client->deleted_kw != NULL)
			mail_update_keywords(mail, MODIFY_ADD,
					     client->deleted_kw);
		else
			mail_expunge(mail);
		count++;
	}
	mail_free(&mail);
	if (count > 0) {
		e_info(user->event, "pop3_lmbox: expire: %u message(s) first "
		       "retrieved %s deleted at QUIT", count,
		       pclient->expire_days == 0 ? "at any time" :
		       t_strdup_printf("more than %u day(s) ago",
				       pclient->expire_days));
	}
	return count;
}

/* --------------------------------------------------------- store writes */

/* Write this session's first-RETR times, except for messages about to be
   expunged. */
static void
pop3_lmbox_retr_flush(struct pop3_lmbox_client *pclient, struct mailbox *box,
		      const ARRAY_TYPE(seq_range) *expunged_uids)
{
	struct mail_user *user = pclient->client->user;
	const struct pop3_lmbox_retr *r;
	struct lmbox_store *store;
	struct lmbox_txn *txn;
	uint32_t folder_id;
	unsigned int count = 0;
	int ret;

	if (array_count(&pclient->retrs) == 0)
		return;
	store = lmbox_plugin_mailbox_get_store(box, &folder_id);
	if (store == NULL) {
		array_clear(&pclient->retrs);
		return;
	}
	if ((ret = lmbox_txn_begin(store, &txn)) < 0)
		goto failed;
	array_foreach(&pclient->retrs, r) {
		if (seq_range_exists(expunged_uids, r->uid))
			continue;
		ret = lmbox_txn_set_pop3_first_retr(txn, folder_id, r->uid,
						    r->when);
		if (ret < 0) {
			lmbox_txn_abort(&txn);
			goto failed;
		}
		count++;
	}
	/* through the plugin: the index shows nothing of these, and it is
	   told that it still mirrors the store (next sync O(1)) */
	if (count == 0)
		lmbox_txn_abort(&txn);
	else if (lmbox_plugin_mailbox_commit_txn(box, &txn) < 0) {
		e_error(user->event, "pop3_lmbox: Recording first retrieval "
			"times failed: %s",
			mailbox_get_last_internal_error(box, NULL));
	}
	array_clear(&pclient->retrs);
	return;
failed:
	/* bookkeeping only: the session goes on */
	e_error(user->event, "pop3_lmbox: Recording first retrieval times "
		"failed: %s", lmbox_store_errmsg(store));
	array_clear(&pclient->retrs);
}

/* "pop3.last_expire": when expiry last deleted something (lmbox stat). */
static void pop3_lmbox_note_expire(struct pop3_lmbox_client *pclient)
{
	struct lmbox_store *store;
	uint32_t folder_id;

	store = lmbox_plugin_mailbox_get_store(pclient->box, &folder_id);
	if (store != NULL &&
	    lmbox_store_set_u64(store, POP3_LMBOX_LAST_EXPIRE,
				(uint64_t)pop3_lmbox_now(pclient)) < 0) {
		e_error(pclient->client->user->event,
			"pop3_lmbox: Writing %s failed: %s",
			POP3_LMBOX_LAST_EXPIRE, lmbox_store_errmsg(store));
	}
}

static int
pop3_lmbox_transaction_commit(struct mailbox_transaction_context *t,
			      struct mail_transaction_commit_changes *changes_r)
{
	struct pop3_lmbox_mailbox *pbox = POP3_LMBOX_BOX_CONTEXT(t->box);
	struct pop3_lmbox_client *pclient = pbox->pclient;
	ARRAY_TYPE(seq_range) expunged_uids;
	bool expired = FALSE;
	int ret;

	t_array_init(&expunged_uids, 8);
	if (pclient->client->quit_seen && !pclient->quit_done &&
	    !pclient->refused) {
		/* pop3's QUIT: the one commit expiry belongs to */
		pclient->quit_done = TRUE;
		if (pclient->expire_enabled)
			expired = pop3_lmbox_expire(pclient, t, &expunged_uids) > 0;
	}
	pop3_lmbox_retr_flush(pclient, t->box, &expunged_uids);

	ret = pbox->module_ctx.super.transaction_commit(t, changes_r);
	if (ret == 0 && expired)
		pop3_lmbox_note_expire(pclient);
	return ret;
}

/* A refused login's INBOX: read-only, and its message walk finds nothing
   (nobody will see the answers). */
static bool
pop3_lmbox_refused_search_next(struct mail_search_context *ctx ATTR_UNUSED,
			       struct mail **mail_r, bool *tryagain_r)
{
	*mail_r = NULL;
	*tryagain_r = FALSE;
	return FALSE;
}

void pop3_lmbox_mailbox_allocated(struct mailbox *box)
{
	struct pop3_lmbox_client *pclient =
		pop3_lmbox_client_get(box->storage->user);
	struct mailbox_vfuncs *v = box->vlast;
	struct pop3_lmbox_mailbox *pbox;

	/* only the INBOX pop3 opens for the session */
	if (pclient == NULL || (box->flags & MAILBOX_FLAG_POP3_SESSION) == 0 ||
	    lmbox_plugin_is_lmbox_storage(box->storage) == 0)
		return;

	pbox = p_new(box->pool, struct pop3_lmbox_mailbox, 1);
	pbox->pclient = pclient;
	pbox->module_ctx.super = *v;
	box->vlast = &pbox->module_ctx.super;
	if (pclient->refused) {
		box->flags &= ENUM_NEGATE(MAILBOX_FLAG_DROP_RECENT);
		box->flags |= MAILBOX_FLAG_READONLY;
		v->search_next_nonblock = pop3_lmbox_refused_search_next;
	} else {
		v->transaction_commit = pop3_lmbox_transaction_commit;
		pclient->box = box;
	}
	MODULE_CONTEXT_SET(box, pop3_lmbox_storage_module, pbox);
}
