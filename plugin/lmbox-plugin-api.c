/*
 * lmbox-plugin-api.c: the exported accessors of lmbox-plugin.h, for
 * modules that keep facts in a user's store (pop3/).  Thin wrappers over
 * the storage's internals; no behaviour of their own.
 */
#include "lib.h"
#include "lmbox-storage.h"
#include "lmbox-plugin.h"

int lmbox_plugin_is_lmbox_storage(struct mail_storage *storage)
{
	return strcmp(storage->name, LMBOX_STORAGE_NAME) == 0 ? 1 : 0;
}

struct lmbox_store *lmbox_plugin_storage_get_store(struct mail_storage *storage)
{
	struct lmbox_storage *lstorage;

	if (lmbox_plugin_is_lmbox_storage(storage) == 0)
		return NULL;
	lstorage = LMBOX_STORAGE(storage);
	if (lmbox_storage_open_store(lstorage) < 0)
		return NULL;
	return lstorage->store;
}

struct lmbox_store *lmbox_plugin_mailbox_get_store(struct mailbox *box,
						   uint32_t *folder_id_r)
{
	return lmbox_mailbox_get_store(box, folder_id_r);
}

int lmbox_plugin_mailbox_commit_txn(struct mailbox *box,
				    struct lmbox_txn **txn)
{
	if (lmbox_plugin_is_lmbox_storage(box->storage) == 0) {
		lmbox_txn_abort(txn);
		return -1;
	}
	return lmbox_mailbox_commit_txn(LMBOX_MAILBOX(box), txn);
}
