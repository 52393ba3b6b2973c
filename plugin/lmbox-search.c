/*
 * lmbox-search.c: searches of an lmbox mailbox.
 *
 * Dovecot's generic search, with one shortcut for POP3: every login
 * searches all messages sorted by POP3 order (pop3-client.c read_mailbox),
 * which makes the generic sort ask each message its order and sort them.
 * When no message of the mailbox has a POP3 order (the index header says
 * so, see LMBOX_INDEX_HEADER_FLAG_HAVE_POP3_ORDERS), that order is UID
 * order, the order the unsorted search returns anyway, so the sort is
 * dropped.
 *
 * An unsorted search of all messages (POP3's login walk, its UIDL and LIST
 * "1:n" searches, IMAP SEARCH ALL) then needs no matching at all: every message of the view is returned in
 * sequence order with one mail, without the generic per-message search
 * work (match tree resets, cost accounting, three data stack frames).  A
 * search of one sequence set (POP3's QUIT: the DELEted messages) walks the
 * set's ranges the same way instead of matching every message of the
 * mailbox against the set.  Any other search is Dovecot's.  In that walk each message is set without
 * mail_set_seq()'s data stack frame (guarded, see lmbox_search_set_seq) and,
 * when the mail wants only metadata, without the access-part updates.
 */
#include "lib.h"
#include "index-storage.h"
#include "index-mail.h"
#include "mail-search.h"
#include "index-search-private.h"
#include "lmbox-storage.h"

static bool lmbox_mailbox_have_pop3_orders(struct lmbox_mailbox *mbox,
					   struct mail_index_view *view)
{
	struct lmbox_index_header hdr;

	if (lmbox_read_index_header(mbox, view, &hdr) <= 0)
		return TRUE; /* unknown: keep the sort */
	return (hdr.flags & LMBOX_INDEX_HEADER_FLAG_HAVE_POP3_ORDERS) != 0;
}

struct mail_search_context *
lmbox_search_init(struct mailbox_transaction_context *t,
		  struct mail_search_args *args,
		  const enum mail_sort_type *sort_program,
		  enum mail_fetch_field wanted_fields,
		  struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(t->box);

	if (sort_program != NULL &&
	    sort_program[0] == MAIL_SORT_POP3_ORDER &&
	    sort_program[1] == MAIL_SORT_END &&
	    !lmbox_mailbox_have_pop3_orders(mbox, t->view))
		sort_program = NULL;
	return index_storage_search_init(t, args, sort_program,
					 wanted_fields, wanted_headers);
}

/* What an unsorted search with nobody hooking the matching needs of the
   generic search: nothing when every message from seq1 to seq2 matches (all
   messages, or one range of sequences covering them: POP3's UIDL and LIST
   search the login's "1:n"), only the walk of its ranges for one set of
   sequences (POP3's QUIT searches the DELEted ones), all of it otherwise. */
static enum lmbox_search_kind
lmbox_search_kind(struct index_search_context *ctx)
{
	struct mail_search_context *_ctx = &ctx->mail_ctx;
	const struct mail_search_arg *arg = _ctx->args->args;
	const struct seq_range *range;
	unsigned int count;

	if (_ctx->sort_program != NULL || _ctx->update_result != NULL ||
	    arg == NULL || arg->next != NULL || arg->match_not ||
	    _ctx->args->have_inthreads ||
	    ctx->box->v.search_next_match_mail !=
	    index_storage_search_next_match_mail)
		return LMBOX_SEARCH_GENERIC;
	switch (arg->type) {
	case SEARCH_ALL:
		return LMBOX_SEARCH_ALL;
	case SEARCH_SEQSET:
		/* seq1..seq2 is already narrowed to the set's bounds */
		range = array_get(&arg->value.seqset, &count);
		if (count == 1 && range[0].seq1 <= ctx->seq1 &&
		    range[0].seq2 >= ctx->seq2)
			return LMBOX_SEARCH_ALL;
		return LMBOX_SEARCH_SEQSET;
	default:
		return LMBOX_SEARCH_GENERIC;
	}
}

/* The next sequence of a SEQSET search: the set's ranges are sorted and
   disjoint (seq-range-array), so one cursor over them replaces the generic
   search's match of every sequence from seq1 to seq2 against the set. */
static bool lmbox_search_next_seqset(struct index_search_context *ctx,
				     struct lmbox_mailbox *mbox)
{
	struct mail_search_context *_ctx = &ctx->mail_ctx;
	const struct seq_range *range;
	unsigned int count, i = mbox->all_search_range;
	uint32_t seq;

	range = array_get(&_ctx->args->args->value.seqset, &count);
	seq = _ctx->seq == 0 ? ctx->seq1 : _ctx->seq + 1;
	while (i < count && range[i].seq2 < seq)
		i++;
	mbox->all_search_range = i;
	if (i == count)
		return FALSE;
	if (seq < range[i].seq1)
		seq = range[i].seq1;
	if (seq > ctx->seq2)
		return FALSE;
	_ctx->seq = seq;
	_ctx->progress_cur = seq;
	return TRUE;
}

/* The fields lmbox's mail answers from the store's metadata or the index,
   without opening or parsing the message. */
#define LMBOX_METADATA_FIELDS \
	(MAIL_FETCH_FLAGS | MAIL_FETCH_RECEIVED_DATE | MAIL_FETCH_SAVE_DATE | \
	 MAIL_FETCH_PHYSICAL_SIZE | MAIL_FETCH_VIRTUAL_SIZE | \
	 MAIL_FETCH_UIDL_BACKEND | MAIL_FETCH_POP3_ORDER | MAIL_FETCH_GUID)

/* Nothing for index_mail_update_access_parts_pre/post() to do: they only
   decide, from wanted fields outside LMBOX_METADATA_FIELDS (parts,
   envelope, body structure, streams, ...), which parts the message must be
   parsed or read for, and open it when some are. */
static bool lmbox_search_metadata_only(struct index_mail *imail)
{
	return (imail->data.wanted_fields & ~LMBOX_METADATA_FIELDS) == 0 &&
		imail->data.wanted_headers == NULL &&
		imail->data.access_part == 0 &&
		!imail->mail.mail.saving;
}

/* mail_set_seq() is set_seq inside a data stack frame, whose t_push() and
   t_pop() cost ~170 instructions, a tenth of the login walk's cost a
   message.  index_mail's set_seq allocates nothing from the data stack, so
   the walk calls it without the frame; should a plugin's set_seq allocate,
   the growth is seen and this mailbox's walks take the frame from then
   on (at most one message's allocation lives until the caller's frame
   ends). */
static void lmbox_search_set_seq(struct mail *mail, uint32_t seq)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(mail->box);
	struct mail_private *pmail = (struct mail_private *)mail;
	size_t used;

	if (mbox->set_seq_framed) {
		mail_set_seq(mail, seq);
		return;
	}
	used = data_stack_get_used_size();
	pmail->v.set_seq(mail, seq, FALSE);
	if (data_stack_get_used_size() != used)
		mbox->set_seq_framed = TRUE;
}

int lmbox_search_deinit(struct mail_search_context *ctx)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(ctx->transaction->box);

	if (mbox->all_search == ctx)
		mbox->all_search = NULL;
	return index_storage_search_deinit(ctx);
}

bool lmbox_search_next_nonblock(struct mail_search_context *_ctx,
				struct mail **mail_r, bool *tryagain_r)
{
	struct index_search_context *ctx =
		container_of(_ctx, struct index_search_context, mail_ctx);
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(_ctx->transaction->box);
	struct index_mail *imail;
	struct mail *mail;

	if (mbox->all_search != _ctx) {
		/* what a search is does not change once it runs */
		mbox->all_search = _ctx;
		mbox->all_search_kind = lmbox_search_kind(ctx);
		mbox->all_search_range = 0;
	}
	if (mbox->all_search_kind == LMBOX_SEARCH_GENERIC)
		return index_storage_search_next_nonblock(_ctx, mail_r,
							  tryagain_r);
	*tryagain_r = FALSE;
	if (ctx->failed)
		return FALSE;
	if (mbox->all_search_kind == LMBOX_SEARCH_SEQSET ?
	    !lmbox_search_next_seqset(ctx, mbox) :
	    !_ctx->transaction->box->v.search_next_update_seq(_ctx))
		return FALSE;

	if (array_count(&_ctx->mails) == 0) {
		mail = mail_alloc(_ctx->transaction, _ctx->wanted_fields,
				  _ctx->wanted_headers);
		imail = INDEX_MAIL(mail);
		imail->mail.search_mail = TRUE;
		array_push_back(&_ctx->mails, &mail);
	} else {
		mail = array_idx_elem(&_ctx->mails, 0);
	}
	lmbox_search_set_seq(mail, _ctx->seq);
	/* what the generic search does once a message matched; nothing
	   when only metadata is wanted (the walks) */
	if (!lmbox_search_metadata_only(INDEX_MAIL(mail))) {
		index_mail_update_access_parts_pre(mail);
		index_mail_update_access_parts_post(mail);
	}
	*mail_r = mail;
	return TRUE;
}
