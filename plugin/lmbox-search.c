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
 */
#include "lib.h"
#include "index-storage.h"
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
