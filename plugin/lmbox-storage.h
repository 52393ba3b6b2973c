#ifndef LMBOX_STORAGE_H
#define LMBOX_STORAGE_H
/*
 * Shared declarations of the "lmbox" Dovecot storage class: the storage,
 * mailbox and save structures and the functions the role files
 * (storage, mail, save, copy, sync) call in each other.
 *
 * The store (liblmbox) is the authority for messages, UIDs, flags and
 * keywords; Dovecot's index files under the mail root are a cache that
 * lmbox-sync.c keeps in step with it.
 */
#include "index-storage.h"
#include "lmbox-compat.h"
#include "lmbox.h"

#define LMBOX_STORAGE_NAME "lmbox"
#define LMBOX_MAILBOX_DIR_NAME "mailboxes"
#define LMBOX_SUBSCRIPTION_FILE_NAME "subscriptions"
#define LMBOX_INDEX_HEADER_NAME "lmbox-hdr"
/* Index record extension: the message's POP3 size as the store recorded it
   at save time (0: not recorded, e.g. above 4 GiB or an index written by
   an older lmbox; then the store's metadata answers). */
#define LMBOX_INDEX_VSIZE_NAME "lmbox-vsize"


/* Dovecot index header extension: what store state the index mirrors. */
struct lmbox_index_header {
	/* the store folder's change_counter the index was last synced to */
	uint64_t change_counter;
	/* the store folder the index belongs to (0 = unknown) */
	uint32_t folder_id;
	uint32_t flags; /* enum lmbox_index_header_flags */
};

enum lmbox_index_header_flags {
	/* some message has a POP3 order; without it POP3's sort by order
	   is UID order and is skipped */
	LMBOX_INDEX_HEADER_FLAG_HAVE_POP3_ORDERS = 0x01,
};

struct lmbox_storage {
	struct mail_storage storage;

	/* opened at storage creation; if that failed, again on each use
	   until it works (so the client gets a clean error, not a dropped
	   connection) */
	struct lmbox_store *store;
	struct lmbox_store_opts opts;
	struct mailbox_list *list;
	const char *store_dir;
	/* lmbox_body_open_count() when the storage was created */
	uint64_t body_opens_at_start;
	bool log_body_opens;
};

enum lmbox_search_kind {
	/* Dovecot's generic search */
	LMBOX_SEARCH_GENERIC = 0,
	/* every message from seq1 to seq2 */
	LMBOX_SEARCH_ALL,
	/* the messages of one sequence set (POP3's DELEs at QUIT) */
	LMBOX_SEARCH_SEQSET,
};

struct lmbox_mailbox {
	struct mailbox box;
	struct lmbox_storage *storage;

	uint32_t hdr_ext_id;
	/* index record extension: each message's POP3 size (lmbox-mail.c) */
	uint32_t vsize_ext_id;
	uint32_t folder_id;
	guid_128_t guid;
	/* read snapshot for metadata lookups; ended at each sync so that it
	   never pins old LMDB pages for longer than one command */
	struct lmbox_reader *reader;
	/* dense metadata of the snapshot, see lmbox-meta.c */
	ARRAY(struct lmbox_msg_meta) meta_cache;
	pool_t meta_pool;
	unsigned int meta_lookups, meta_hint;
	/* changes whenever the strings lookups handed out (dense array or
	   reader arena) may be gone */
	unsigned int meta_gen;
	/* a set_seq of this mailbox's mails allocated from the data stack:
	   searches use mail_set_seq()'s frame (lmbox-search.c) */
	bool set_seq_framed;
	/* the search whose lmbox_search_kind() answer is all_search_kind
	   (decided at its first message, forgotten at its deinit), and for a
	   sequence-set walk the range it is in */
	struct mail_search_context *all_search;
	enum lmbox_search_kind all_search_kind;
	unsigned int all_search_range;
};

#define LMBOX_STORAGE(s) (container_of(s, struct lmbox_storage, storage))
#define LMBOX_MAILBOX(s) (container_of(s, struct lmbox_mailbox, box))

extern struct mail_storage lmbox_storage;
extern struct mail_vfuncs lmbox_mail_vfuncs;

/* lmbox-storage.c */
/* Report a store failure err on storage: critical (logged with the store's
   message) for I/O, corruption and configuration problems, a plain error
   for NOTFOUND/EXISTS/NOSPACE. */
/* Log the malformed message records a walk of box's folder skipped (the
   folder's other messages stay served; `lmbox check` lists the damage). */
void lmbox_mailbox_report_corrupt(struct mailbox *box,
				  const struct lmbox_msg_iter *iter);
void lmbox_storage_set_error(struct mail_storage *storage, int err,
			     const char *what);
bool lmbox_is_lmbox_mailbox(struct mailbox *box);
/* Open the store if it isn't yet.  -1 = failed, critical error set. */
int lmbox_storage_open_store(struct lmbox_storage *storage);

/* lmbox-mailbox.c */
/* For other plugins (the pop3 session module, which loads after "lmbox"):
   the store and folder of an opened lmbox mailbox, NULL for any other
   mailbox.  The store stays the plugin's: don't close it. */
struct lmbox_store *lmbox_mailbox_get_store(struct mailbox *box,
					    uint32_t *folder_id_r);
struct mailbox *
lmbox_mailbox_alloc(struct mail_storage *storage, struct mailbox_list *list,
		    const char *vname, enum mailbox_flags flags);
/* The mailbox's read snapshot, begun on first use.  NULL on error (set). */
struct lmbox_reader *lmbox_mailbox_get_reader(struct lmbox_mailbox *mbox);
void lmbox_mailbox_reader_end(struct lmbox_mailbox *mbox);
/* Metadata of uid: 1 found, 0 expunged, -1 error (set on storage).  Takes
   a fresh snapshot once if the current one does not have it. */
int lmbox_mailbox_msg_lookup(struct lmbox_mailbox *mbox, uint32_t uid,
			     struct lmbox_msg_meta *meta_r);
int lmbox_read_index_header(struct lmbox_mailbox *mbox,
			    struct mail_index_view *view,
			    struct lmbox_index_header *hdr_r);

/* lmbox-meta.c */
/* Like lmbox_mailbox_msg_lookup() but without keywords, and answered from
   a dense copy of the snapshot during walks. */
int lmbox_meta_lookup(struct lmbox_mailbox *mbox, uint32_t uid,
		      struct lmbox_msg_meta *meta_r);
/* The dense array's entry of uid (valid until meta_gen changes), or NULL
   when there is no dense array or uid is not in it. */
const struct lmbox_msg_meta *
lmbox_meta_dense_find(struct lmbox_mailbox *mbox, uint32_t uid);
void lmbox_meta_cache_clear(struct lmbox_mailbox *mbox);

/* lmbox-mail.c */
struct mail *
lmbox_mail_alloc(struct mailbox_transaction_context *t,
		 enum mail_fetch_field wanted_fields,
		 struct mailbox_header_lookup_ctx *wanted_headers);

/* lmbox-search.c */
struct mail_search_context *
lmbox_search_init(struct mailbox_transaction_context *t,
		  struct mail_search_args *args,
		  const enum mail_sort_type *sort_program,
		  enum mail_fetch_field wanted_fields,
		  struct mailbox_header_lookup_ctx *wanted_headers);
int lmbox_search_deinit(struct mail_search_context *ctx);
bool lmbox_search_next_nonblock(struct mail_search_context *ctx,
				struct mail **mail_r, bool *tryagain_r);

/* lmbox-sync.c */
enum lmbox_sync_flags {
	LMBOX_SYNC_FLAG_FORCE = 0x01,
	LMBOX_SYNC_FLAG_FSYNC = 0x02,
	LMBOX_SYNC_FLAG_FORCE_REBUILD = 0x04,
};

struct lmbox_sync_context {
	struct lmbox_mailbox *mbox;
	struct mail_index_sync_ctx *index_sync_ctx;
	struct mail_index_view *sync_view;
	struct mail_index_transaction *trans;
	ARRAY_TYPE(uint32_t) expunged_uids;
	/* store change_counter and next_uid as of the reconcile */
	uint64_t change_counter;
	uint32_t store_next_uid;
	/* store change_counter right before this sync's own store commit */
	uint64_t pre_commit_counter;
	/* store messages appended to the index by this sync */
	unsigned int added;
	/* the extension header as this sync will leave it */
	struct lmbox_index_header hdr;
};

int lmbox_sync_begin(struct lmbox_mailbox *mbox, enum lmbox_sync_flags flags,
		     struct lmbox_sync_context **ctx_r);
int lmbox_sync_finish(struct lmbox_sync_context **ctx, bool success);
int lmbox_sync(struct lmbox_mailbox *mbox, enum lmbox_sync_flags flags);
/* Record in the sync's transaction that the index mirrors info. */
void lmbox_sync_record_counter(struct lmbox_sync_context *ctx,
			       const struct lmbox_folder_info *info);
/* Commit a store transaction whose changes Dovecot's index does not show
   (e.g. POP3 first-retrieval times) so that the next sync need not walk
   the mailbox.  *txn is freed.  -1 = failed, error set on the storage. */
int lmbox_mailbox_commit_txn(struct lmbox_mailbox *mbox,
			     struct lmbox_txn **txn);
void lmbox_sync_add_header_flags(struct lmbox_sync_context *ctx,
				 uint32_t flags);
/* Does the index need a sync against the store?  O(1). */
int lmbox_sync_needed(struct lmbox_mailbox *mbox, bool *needed_r);
struct mailbox_sync_context *
lmbox_storage_sync_init(struct mailbox *box, enum mailbox_sync_flags flags);

/* lmbox-save.c */
struct mail_save_context *
lmbox_save_alloc(struct mailbox_transaction_context *t);
int lmbox_save_begin(struct mail_save_context *ctx, struct istream *input);
int lmbox_save_continue(struct mail_save_context *ctx);
int lmbox_save_finish(struct mail_save_context *ctx);
void lmbox_save_cancel(struct mail_save_context *ctx);
int lmbox_transaction_save_commit_pre(struct mail_save_context *ctx);
void lmbox_transaction_save_commit_post(struct mail_save_context *ctx,
		struct mail_index_transaction_commit_result *result);
void lmbox_transaction_save_rollback(struct mail_save_context *ctx);
/* For lmbox-copy.c: the store transaction of the save context (begun on
   first use), and registering a store-side copy/move as the next saved
   message of the transaction.  NULL / -1 on error (set). */
struct lmbox_txn *lmbox_save_get_txn(struct mail_save_context *ctx);
void lmbox_save_set_finished(struct mail_save_context *ctx);
/* A message copied or moved inside the store (store_seq from
   lmbox_txn_copy/move) becomes the next saved message: an index record
   with the save context's flags, keywords, its POP3 size and src_mail's
   cache fields. */
void lmbox_save_add_copied(struct mail_save_context *ctx,
			   struct mail *src_mail, unsigned int store_seq,
			   uint32_t pop3_order, uint64_t vsize);

/* Set the record's lmbox-vsize (lmbox-sync.c). */
void lmbox_index_set_vsize(struct lmbox_mailbox *mbox,
			   struct mail_index_transaction *trans, uint32_t seq,
			   uint64_t vsize);

/* lmbox-copy.c */
int lmbox_copy(struct mail_save_context *ctx, struct mail *mail);

#endif
