#ifndef LMBOX_PLUGIN_H
#define LMBOX_PLUGIN_H
/*
 * lmbox-plugin.h: the public interface of lib20_lmbox_plugin.so for other
 * Dovecot modules (the pop3_lmbox session module).  It hands out the
 * liblmbox store behind an lmbox storage or mailbox, so that a module can
 * keep its own facts in the store (lmbox_store_get_u64/set_u64, its own
 * lmbox_txn) through storage/lmbox.h, without the plugin's private
 * structures.
 *
 * A module using this links against nothing: Dovecot loads
 * lib20_lmbox_plugin.so first (declare "lmbox" in <module>_dependencies)
 * with RTLD_GLOBAL, and these symbols and liblmbox's resolve to it.  That
 * keeps one copy of liblmbox, hence one LMDB environment per store, in
 * the process.
 *
 * The store belongs to the storage: never close it, and do not keep it
 * past the storage's (the mail user's) lifetime.
 */
#include "lmbox.h"

struct mail_storage;
struct mailbox;

/* Name of the storage class, as in mail_location = lmbox:~/lmbox. */
#define LMBOX_PLUGIN_STORAGE_NAME "lmbox"

/* Is storage an lmbox storage? */
int lmbox_plugin_is_lmbox_storage(struct mail_storage *storage);

/* The store of an lmbox storage, opened if it is not yet.  NULL if storage
   is not lmbox, or the store could not be opened (then the storage's error
   is set and was logged as critical). */
struct lmbox_store *lmbox_plugin_storage_get_store(struct mail_storage *storage);

/* The store and store folder id of an opened lmbox mailbox.  NULL if box
   is not lmbox or not opened. */
struct lmbox_store *lmbox_plugin_mailbox_get_store(struct mailbox *box,
						   uint32_t *folder_id_r);

/* Commit txn, whose changes concern only store metadata that Dovecot's
   index does not show (POP3 first-retrieval times), for the opened lmbox
   mailbox box.  Unlike lmbox_txn_commit(), the index is told that it
   still mirrors the store, so the next sync stays O(1) instead of walking
   every message.  *txn is freed either way.  0 ok, -1 failed (box's
   storage error set). */
int lmbox_plugin_mailbox_commit_txn(struct mailbox *box,
				    struct lmbox_txn **txn);

#endif
