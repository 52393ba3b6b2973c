/*
 * lmbox-save.c: saving messages (LMTP/LDA delivery, IMAP APPEND, dsync,
 * and the generic copy fallback) into an lmbox mailbox.
 *
 * Each message streams into an lmbox_append of one store transaction per
 * mailbox transaction (received date, save date, GUID, POP3 UIDL and
 * order, flags, keywords and a wanted UID are taken from the save
 * context); the index gets a record with UID 0.  At commit, under the
 * index sync lock (after a sync so that the index holds every store
 * message), the store transaction commits and assigns the UIDs, which are
 * then written into the index records and reported as saved_uids
 * (APPENDUID).  If the index commit fails after the store commit, the
 * next sync finds the messages in the store: nothing is lost.
 */
#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "istream.h"
#include "str.h"
#include "str-sanitize.h"
#include "index-mail.h"
#include "mail-index-transaction-private.h"
#include "lmbox-storage.h"

struct lmbox_save_context {
	struct mail_save_context ctx;

	struct lmbox_mailbox *mbox;
	struct mail_index_transaction *trans;
	struct lmbox_txn *txn;

	/* the message being saved */
	struct lmbox_append *append;
	struct istream *input;
	uint32_t seq;

	/* store sequence of each index append of the transaction */
	ARRAY(unsigned int) store_seqs;
	struct lmbox_sync_context *sync_ctx;

	bool failed:1;
	bool finished:1;
	bool have_pop3_orders:1;
};

#define LMBOX_SAVECTX(s) (container_of(s, struct lmbox_save_context, ctx))

struct mail_save_context *
lmbox_save_alloc(struct mailbox_transaction_context *t)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(t->box);
	struct lmbox_save_context *ctx;

	if (t->save_ctx != NULL) {
		/* reuse the transaction's context for the next message */
		ctx = LMBOX_SAVECTX(t->save_ctx);
		ctx->failed = FALSE;
		ctx->finished = FALSE;
		return &ctx->ctx;
	}
	ctx = i_new(struct lmbox_save_context, 1);
	ctx->ctx.transaction = t;
	ctx->mbox = mbox;
	ctx->trans = t->itrans;
	i_array_init(&ctx->store_seqs, 32);
	t->save_ctx = &ctx->ctx;
	return t->save_ctx;
}

struct lmbox_txn *lmbox_save_get_txn(struct mail_save_context *_ctx)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);
	int ret;

	if (ctx->txn == NULL) {
		ret = lmbox_txn_begin(ctx->mbox->storage->store, &ctx->txn);
		if (ret < 0) {
			ctx->txn = NULL;
			lmbox_storage_set_error(ctx->mbox->box.storage, ret,
						"beginning a transaction");
			return NULL;
		}
	}
	return ctx->txn;
}

static void
lmbox_save_add_to_index(struct mail_save_context *_ctx, uint32_t *seq_r)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);
	struct mail_save_data *mdata = &_ctx->data;

	/* the UID comes from the store at commit */
	mail_index_append(ctx->trans, 0, &ctx->seq);
	mail_index_update_flags(ctx->trans, ctx->seq, MODIFY_REPLACE,
				mdata->flags & MAIL_FLAGS_NONRECENT);
	if (mdata->keywords != NULL) {
		mail_index_update_keywords(ctx->trans, ctx->seq,
					   MODIFY_REPLACE, mdata->keywords);
	}
	if (mdata->min_modseq != 0) {
		mail_index_update_modseq(ctx->trans, ctx->seq,
					 mdata->min_modseq);
	}
	*seq_r = ctx->seq;
}

void lmbox_save_set_finished(struct mail_save_context *_ctx)
{
	LMBOX_SAVECTX(_ctx)->finished = TRUE;
}

void lmbox_save_add_copied(struct mail_save_context *_ctx,
			   struct mail *src_mail, unsigned int store_seq,
			   uint32_t pop3_order, uint64_t vsize)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);

	if (pop3_order != 0)
		ctx->have_pop3_orders = TRUE;
	ctx->finished = TRUE;
	lmbox_save_add_to_index(_ctx, &ctx->seq);
	lmbox_index_set_vsize(ctx->mbox, ctx->trans, ctx->seq, vsize);
	array_push_back(&ctx->store_seqs, &store_seq);
	index_copy_cache_fields(_ctx, src_mail, ctx->seq);
	mail_set_seq_saving(_ctx->dest_mail, ctx->seq);
	index_save_context_free(_ctx);
}

static bool lmbox_uidl_is_valid(const char *uidl)
{
	size_t len = strlen(uidl), i;

	if (len == 0 || len > LMBOX_MAX_UIDL_LEN)
		return FALSE;
	for (i = 0; i < len; i++) {
		if (uidl[i] < 0x21 || uidl[i] > 0x7e)
			return FALSE;
	}
	return TRUE;
}

/* Keyword names of the save data, NULL-terminated, on the data stack. */
static const char *const *
lmbox_save_keyword_names(struct mailbox *box, const struct mail_keywords *kw)
{
	const ARRAY_TYPE(keywords) *names = mail_index_get_keywords(box->index);
	const char **list;
	unsigned int i, n = 0;

	list = t_new(const char *, kw->count + 1);
	for (i = 0; i < kw->count; i++) {
		if (kw->idx[i] < array_count(names))
			list[n++] = array_idx_elem(names, kw->idx[i]);
	}
	return list;
}

int lmbox_save_begin(struct mail_save_context *_ctx, struct istream *input)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);
	struct mailbox *box = _ctx->transaction->box;
	struct mail_save_data *mdata = &_ctx->data;
	struct lmbox_append_opts opts;
	struct lmbox_txn *txn;
	guid_128_t guid;
	int ret;

	if ((txn = lmbox_save_get_txn(_ctx)) == NULL) {
		ctx->failed = TRUE;
		return -1;
	}
	if (mdata->received_date == (time_t)-1)
		mdata->received_date = ioloop_time;

	lmbox_append_opts_init(&opts);
	opts.received_date = mdata->received_date;
	if (mdata->save_date != (time_t)-1)
		opts.save_date = mdata->save_date;
	if (mdata->guid != NULL) {
		/* 128-bit GUIDs are kept; others are hashed to 128 bits, as
		   dsync expects of a HAVE_MAIL_GUID128 storage */
		if (guid_128_from_string(mdata->guid, guid) < 0)
			mail_generate_guid_128_hash(mdata->guid, guid);
		opts.guid = guid;
	}
	if (mdata->pop3_uidl != NULL) {
		if (lmbox_uidl_is_valid(mdata->pop3_uidl))
			opts.uidl = mdata->pop3_uidl;
		else {
			e_warning(box->event,
				  "lmbox: Ignoring invalid POP3 UIDL '%s'",
				  str_sanitize(mdata->pop3_uidl, 80));
		}
	}
	opts.pop3_order = mdata->pop3_order;
	if (mdata->pop3_order != 0)
		ctx->have_pop3_orders = TRUE;
	opts.flags = mdata->flags & MAIL_FLAGS_NONRECENT;
	opts.uid = mdata->uid;
	if (mdata->uid != 0) {
		e_debug(box->event, "lmbox: Saving with wanted UID %u",
			mdata->uid);
	}

	T_BEGIN {
		if (mdata->keywords != NULL && mdata->keywords->count > 0)
			opts.keywords = lmbox_save_keyword_names(box,
							mdata->keywords);
		ret = lmbox_append_begin(txn, LMBOX_MAILBOX(box)->folder_id,
					 &opts, &ctx->append);
	} T_END;
	if (ret < 0) {
		ctx->append = NULL;
		lmbox_storage_set_error(box->storage, ret, "saving message");
		ctx->failed = TRUE;
		return -1;
	}

	lmbox_save_add_to_index(_ctx, &ctx->seq);
	mail_set_seq_saving(_ctx->dest_mail, ctx->seq);
	ctx->input = index_mail_cache_parse_init(_ctx->dest_mail, input);
	return 0;
}

int lmbox_save_continue(struct mail_save_context *_ctx)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);
	struct mail_storage *storage = _ctx->transaction->box->storage;
	const unsigned char *data;
	size_t size;
	int ret;

	if (ctx->failed)
		return -1;
	do {
		while (i_stream_read_more(ctx->input, &data, &size) > 0) {
			ret = lmbox_append_write(ctx->append, data, size);
			if (ret < 0) {
				lmbox_storage_set_error(storage, ret,
							"saving message");
				ctx->failed = TRUE;
				return -1;
			}
			i_stream_skip(ctx->input, size);
		}
		index_mail_cache_parse_continue(_ctx->dest_mail);
		/* the cache parser shares the input through a tee: keep
		   going while either reader gets more */
	} while (i_stream_read(ctx->input) > 0);

	if (ctx->input->stream_errno != 0) {
		mail_set_critical(_ctx->dest_mail, "save: read(%s) failed: %s",
				  i_stream_get_name(ctx->input),
				  i_stream_get_error(ctx->input));
		ctx->failed = TRUE;
		return -1;
	}
	return 0;
}

int lmbox_save_finish(struct mail_save_context *_ctx)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);
	struct mail_storage *storage = _ctx->transaction->box->storage;
	int ret;

	ctx->finished = TRUE;
	if (ctx->append != NULL) {
		if (!ctx->failed &&
		    ctx->input != NULL && ctx->input->stream_errno == 0) {
			lmbox_index_set_vsize(ctx->mbox, ctx->trans, ctx->seq,
				lmbox_append_virt_size(ctx->append));
			ret = lmbox_append_finish(&ctx->append);
			if (ret < 0) {
				lmbox_storage_set_error(storage, ret,
							"saving message");
				ctx->failed = TRUE;
			} else {
				unsigned int store_seq = ret;

				array_push_back(&ctx->store_seqs, &store_seq);
			}
		} else {
			ctx->failed = TRUE;
		}
		lmbox_append_abort(&ctx->append);
	}
	if (ctx->input != NULL) {
		index_mail_cache_parse_deinit(_ctx->dest_mail,
					      _ctx->data.received_date,
					      !ctx->failed);
		if (ctx->failed)
			index_storage_save_abort_last(_ctx, ctx->seq);
		i_stream_unref(&ctx->input);
	}
	index_save_context_free(_ctx);
	return ctx->failed ? -1 : 0;
}

void lmbox_save_cancel(struct mail_save_context *_ctx)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);

	ctx->failed = TRUE;
	(void)lmbox_save_finish(_ctx);
}

static void lmbox_save_free(struct lmbox_save_context *ctx)
{
	lmbox_append_abort(&ctx->append);
	lmbox_txn_abort(&ctx->txn);
	if (ctx->sync_ctx != NULL)
		(void)lmbox_sync_finish(&ctx->sync_ctx, FALSE);
	array_free(&ctx->store_seqs);
	i_free(ctx);
}

/* Write the store's UIDs into the transaction's appended index records
   and collect them as saved_uids, in save order. */
static void
lmbox_save_assign_uids(struct lmbox_save_context *ctx,
		       const struct lmbox_commit_result *result,
		       uint32_t index_next_uid)
{
	struct mailbox_transaction_context *t = ctx->ctx.transaction;
	struct mail_index_transaction *itrans = ctx->trans;
	struct mail_index_record *recs;
	const unsigned int *store_seqs;
	struct seq_range *range = NULL;
	unsigned int i, count, seq_count;
	uint32_t uid, highest = 0, prev = 0;

	recs = array_get_modifiable(&itrans->appends, &count);
	store_seqs = array_get(&ctx->store_seqs, &seq_count);
	i_assert(count == seq_count);

	for (i = 0; i < count; i++) {
		uid = store_seqs[i] < result->uid_count ?
			result->uids[store_seqs[i]] : 0;
		if (uid != 0 && uid > highest)
			highest = uid;
		recs[i].uid = uid;
	}
	for (i = 0; i < count; i++) {
		if (recs[i].uid == 0) {
			/* the copy source vanished before the commit: give
			   the record a UID the store doesn't use; the next
			   sync expunges it and raises the store's next UID */
			recs[i].uid = highest = I_MAX(highest, index_next_uid - 1) + 1;
		}
		if (recs[i].uid < index_next_uid) {
			mailbox_set_critical(t->box,
				"lmbox: Store assigned UID %u below the index's "
				"next UID %u", recs[i].uid, index_next_uid);
		}
		if (recs[i].uid < prev)
			itrans->appends_nonsorted = TRUE;
		prev = recs[i].uid;

		if (range != NULL && range->seq2 + 1 == recs[i].uid)
			range->seq2++;
		else {
			range = array_append_space(&t->changes->saved_uids);
			range->seq1 = range->seq2 = recs[i].uid;
		}
	}
	if (itrans->highest_append_uid < highest)
		itrans->highest_append_uid = highest;
}

int lmbox_transaction_save_commit_pre(struct mail_save_context *_ctx)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);
	struct mailbox_transaction_context *t = _ctx->transaction;
	struct mailbox *box = t->box;
	struct lmbox_mailbox *mbox = ctx->mbox;
	struct lmbox_commit_result result;
	struct lmbox_folder_info info;
	const struct mail_index_header *hdr;
	const char *warning;
	uint64_t counter_before;
	unsigned int i;
	int ret;

	i_assert(ctx->finished);

	if (array_count(&ctx->store_seqs) == 0) {
		lmbox_txn_abort(&ctx->txn);
		return 0;
	}

	/* Bodies to their segments and synced before any lock: concurrent
	   deliveries do this in parallel (lmbox_txn_prepare). */
	if ((ret = lmbox_txn_prepare(ctx->txn)) < 0) {
		lmbox_storage_set_error(box->storage, ret, "writing messages");
		goto failed;
	}

	/* Take the index sync lock with an index that holds every store
	   message, so that the store's new UIDs come after the index's. */
	for (i = 0;; i++) {
		/* no LMBOX_SYNC_FLAG_FSYNC: the store commit below is what
		   makes the delivery durable (see lmbox_mailbox_open) */
		if (lmbox_sync_begin(mbox, LMBOX_SYNC_FLAG_FORCE,
				     &ctx->sync_ctx) < 0)
			goto failed;
		i_assert(ctx->sync_ctx != NULL);
		if (ctx->sync_ctx->added == 0)
			break;
		if (lmbox_sync_finish(&ctx->sync_ctx, TRUE) < 0)
			goto failed;
		if (i >= 2) {
			mailbox_set_critical(box,
				"lmbox: Store keeps changing under the index");
			goto failed;
		}
	}
	if (!array_is_created(&ctx->trans->appends) ||
	    array_count(&ctx->trans->appends) != array_count(&ctx->store_seqs)) {
		mailbox_set_critical(box, "lmbox: %u index appends but %u "
				     "store messages in a transaction",
				     array_is_created(&ctx->trans->appends) ?
				     array_count(&ctx->trans->appends) : 0,
				     array_count(&ctx->store_seqs));
		goto failed;
	}
	counter_before = ctx->sync_ctx->change_counter;
	hdr = mail_index_get_header(ctx->sync_ctx->sync_view);

	i_zero(&result);
	/* synced in lmbox_transaction_commit, outside the index lock */
	lmbox_txn_defer_sync(ctx->txn);
	if ((ret = lmbox_txn_commit(&ctx->txn, &result)) < 0) {
		lmbox_storage_set_error(box->storage, ret, "committing messages");
		goto failed;
	}
	/* e.g. the store dictionary could not be trained: saves go on */
	warning = lmbox_store_take_warning(mbox->storage->store);
	if (warning != NULL)
		e_warning(box->event, "lmbox: %s", warning);
	lmbox_save_assign_uids(ctx, &result, hdr->next_uid);
	if (ctx->have_pop3_orders) {
		lmbox_sync_add_header_flags(ctx->sync_ctx,
			LMBOX_INDEX_HEADER_FLAG_HAVE_POP3_ORDERS);
	}
	lmbox_commit_result_free(&result);
	t->changes->uid_validity = hdr->uid_validity;

	/* If ours was the only commit to the folder, the index will mirror
	   the store exactly once this transaction is in: record that. */
	if (lmbox_folder_get(mbox->storage->store, mbox->folder_id, &info) == 0 &&
	    info.change_counter == counter_before + 1)
		lmbox_sync_record_counter(ctx->sync_ctx, &info);
	return 0;

failed:
	lmbox_transaction_save_rollback(_ctx);
	return -1;
}

void lmbox_transaction_save_commit_post(struct mail_save_context *_ctx,
		struct mail_index_transaction_commit_result *result)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);

	_ctx->transaction = NULL; /* already freed */
	if (ctx->sync_ctx != NULL) {
		mail_index_sync_set_commit_result(ctx->sync_ctx->index_sync_ctx,
						  result);
		(void)lmbox_sync_finish(&ctx->sync_ctx, TRUE);
	}
	lmbox_save_free(ctx);
}

void lmbox_transaction_save_rollback(struct mail_save_context *_ctx)
{
	struct lmbox_save_context *ctx = LMBOX_SAVECTX(_ctx);

	if (!ctx->finished)
		lmbox_save_cancel(_ctx);
	lmbox_save_free(ctx);
}
