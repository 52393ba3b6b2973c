/*
 * lmbox-mailbox.c: mailboxes of the lmbox storage.
 *
 * A mailbox is a store folder (named by Dovecot's storage name) plus a
 * directory under ROOT/mailboxes/ holding Dovecot's index files.  Open
 * finds the folder (INBOX is created when missing) and brings a stale or
 * lost index in step; create, rename, delete and update act on the store
 * first, then on the directories and index.  Metadata lookups go through
 * one read snapshot per mailbox, ended at every sync.
 */
#include "lib.h"
#include "array.h"
#include "str.h"
#include "mailbox-list-private.h"
#include "lmbox-storage.h"

/* Dovecot's default mail_index_log_rotate_min_age */
#define LMBOX_DOVECOT_LOG_ROTATE_MIN_AGE (5 * 60)

#include <sys/stat.h>

extern struct mailbox lmbox_mailbox;

struct lmbox_store *lmbox_mailbox_get_store(struct mailbox *box,
					    uint32_t *folder_id_r)
{
	struct lmbox_mailbox *mbox;

	if (!lmbox_is_lmbox_mailbox(box) || !box->opened)
		return NULL;
	mbox = LMBOX_MAILBOX(box);
	*folder_id_r = mbox->folder_id;
	return mbox->storage->store;
}

struct lmbox_reader *lmbox_mailbox_get_reader(struct lmbox_mailbox *mbox)
{
	int ret;

	if (mbox->reader == NULL) {
		ret = lmbox_reader_begin(mbox->storage->store, &mbox->reader);
		if (ret < 0) {
			mbox->reader = NULL;
			lmbox_storage_set_error(mbox->box.storage, ret,
						"beginning a read snapshot");
			return NULL;
		}
	}
	return mbox->reader;
}

void lmbox_mailbox_reader_end(struct lmbox_mailbox *mbox)
{
	lmbox_meta_cache_clear(mbox);
	if (mbox->reader != NULL)
		lmbox_reader_end(&mbox->reader);
}

int lmbox_mailbox_msg_lookup(struct lmbox_mailbox *mbox, uint32_t uid,
			     struct lmbox_msg_meta *meta_r)
{
	struct lmbox_reader *reader;
	unsigned int i;
	int ret = LMBOX_ERR_NOTFOUND;

	for (i = 0; i < 2; i++) {
		if ((reader = lmbox_mailbox_get_reader(mbox)) == NULL)
			return -1;
		if (i > 0) {
			lmbox_meta_cache_clear(mbox);
			if ((ret = lmbox_reader_refresh(reader)) < 0)
				break;
		}
		ret = lmbox_reader_msg(reader, mbox->folder_id, uid, meta_r);
		if (ret != LMBOX_ERR_NOTFOUND)
			break;
	}
	if (ret == LMBOX_ERR_NOTFOUND)
		return 0;
	if (ret < 0) {
		lmbox_storage_set_error(mbox->box.storage, ret,
			t_strdup_printf("reading metadata of %s UID %u",
					mbox->box.vname, uid));
		return -1;
	}
	return 1;
}

int lmbox_read_index_header(struct lmbox_mailbox *mbox,
			    struct mail_index_view *view,
			    struct lmbox_index_header *hdr_r)
{
	const void *data;
	size_t size;

	i_zero(hdr_r);
	mail_index_get_header_ext(view, mbox->hdr_ext_id, &data, &size);
	if (size < sizeof(*hdr_r))
		return 0;
	memcpy(hdr_r, data, sizeof(*hdr_r));
	return 1;
}

struct mailbox *
lmbox_mailbox_alloc(struct mail_storage *storage, struct mailbox_list *list,
		    const char *vname, enum mailbox_flags flags)
{
	struct lmbox_mailbox *mbox;
	struct index_mailbox_context *ibox;
	pool_t pool;

	/* the index is needed for UIDs and sequences */
	flags &= ENUM_NEGATE(MAILBOX_FLAG_NO_INDEX_FILES);

	pool = pool_alloconly_create("lmbox mailbox", 1024*3);
	mbox = p_new(pool, struct lmbox_mailbox, 1);
	mbox->box = lmbox_mailbox;
	mbox->box.pool = pool;
	mbox->box.storage = storage;
	mbox->box.list = list;
	mbox->box.mail_vfuncs = &lmbox_mail_vfuncs;

	index_storage_mailbox_alloc(&mbox->box, vname, flags, MAIL_INDEX_PREFIX);

	/* An in-memory index (INDEX=MEMORY, or index files that can't be
	   written) is fine: the store has everything, a session just pays a
	   walk of the folder at open. */
	ibox = INDEX_STORAGE_CONTEXT(&mbox->box);
	ibox->index_flags |= MAIL_INDEX_OPEN_FLAG_KEEP_BACKUPS;

	mbox->storage = LMBOX_STORAGE(storage);
	return &mbox->box;
}

/* Find the mailbox's store folder; INBOX is created when missing.
   Returns 1 found, 0 not found (error set), -1 error. */
static int lmbox_mailbox_find_folder(struct lmbox_mailbox *mbox)
{
	struct mailbox *box = &mbox->box;
	struct lmbox_store *store;
	struct lmbox_folder_info info;
	uint32_t id;
	int ret;

	if (lmbox_storage_open_store(mbox->storage) < 0)
		return -1;
	store = mbox->storage->store;

	ret = lmbox_folder_lookup(store, box->name, &info);
	if (ret == LMBOX_ERR_NOTFOUND && box->inbox_any) {
		ret = lmbox_folder_create(store, box->name, 0, NULL, &id);
		if (ret < 0 && ret != LMBOX_ERR_EXISTS) {
			lmbox_storage_set_error(box->storage, ret,
						"creating INBOX");
			return -1;
		}
		ret = lmbox_folder_lookup(store, box->name, &info);
	}
	if (ret == LMBOX_ERR_NOTFOUND) {
		mail_storage_set_error(box->storage, MAIL_ERROR_NOTFOUND,
				       T_MAIL_ERR_MAILBOX_NOT_FOUND(box->vname));
		return 0;
	}
	if (ret < 0) {
		lmbox_storage_set_error(box->storage, ret, "looking up folder");
		return -1;
	}
	mbox->folder_id = info.id;
	memcpy(mbox->guid, info.guid, sizeof(mbox->guid));
	return 1;
}

/* The store folder exists, so its directory must too (it holds the index
   files and makes the fs list show the mailbox). */
static int lmbox_mailbox_mkdir(struct mailbox *box)
{
	const char *path;
	struct stat st;

	if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_MAILBOX, &path) <= 0)
		return 0;
	if (stat(path, &st) == 0)
		return 0;
	if (errno != ENOENT) {
		mailbox_set_critical(box, "stat(%s) failed: %m", path);
		return -1;
	}
	return mailbox_mkdir(box, path, MAILBOX_LIST_PATH_TYPE_MAILBOX) < 0 ?
		-1 : 0;
}

static int lmbox_mailbox_open(struct mailbox *box)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	struct lmbox_index_header hdr;
	bool needed;
	int ret;

	if ((ret = lmbox_mailbox_find_folder(mbox)) <= 0)
		return -1;
	if (lmbox_mailbox_mkdir(box) < 0)
		return -1;
	if (index_storage_mailbox_alloc_index(box) < 0)
		return -1;
	if (box->storage->set->mail_index_log_rotate_min_age ==
	    LMBOX_DOVECOT_LOG_ROTATE_MIN_AGE) {
		/* Every open of the index computes modseqs over the log
		   from its start to the index's offset (~14 instructions a
		   byte): after a burst of deliveries a POP3 login scans up
		   to a 1 MB log, and read-only logins never rotate it.  So
		   a log past mail_index_log_rotate_min_size is rotated at
		   the next write after one second, not after Dovecot's
		   five minutes (docs/plugin.md, POP3 login walk). */
		struct mail_index_optimization_settings optset;

		i_zero(&optset);
		optset.log.min_age_secs = 1;
		mail_index_set_optimization_settings(box->index, &optset);
	}

	i_zero(&hdr);
	mbox->hdr_ext_id = mail_index_ext_register(box->index,
		LMBOX_INDEX_HEADER_NAME, sizeof(hdr), 0, 0);
	mbox->vsize_ext_id = mail_index_ext_register(box->index,
		LMBOX_INDEX_VSIZE_NAME, 0, sizeof(uint32_t), sizeof(uint32_t));
	if (index_storage_mailbox_open(box, FALSE) < 0)
		return -1;
	/* The store, not the index, makes an append or an expunge durable:
	   it is committed (and synced) before the index hears of it, and an
	   index that lost its tail in a crash is brought in step with the
	   store at the next open (lmbox_sync_needed).  So, unlike dbox, the
	   index log is not synced for appends and expunges; mail_fsync=always
	   still syncs every write. */
	mail_index_set_fsync_mode(box->index,
				  box->storage->set->parsed_fsync_mode, 0);

	/* A fresh or stale index (deleted index files, changes made while
	   the index was not looking) is brought in step right away, so that
	   even a STATUS without a sync sees the store.  O(1) when nothing
	   changed; an error here shows again at the caller's sync. */
	if (!box->creating && lmbox_sync_needed(mbox, &needed) == 0 && needed)
		(void)lmbox_sync(mbox, 0);
	return 0;
}

/* A save's store commit returns before its last sync (lmbox_save.c): the
   sync runs here, after Dovecot's index lock is released too, so that
   concurrent deliveries' syncs overlap; the commit is reported only once
   it is durable. */
static int
lmbox_transaction_commit(struct mailbox_transaction_context *t,
			 struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	int ret, sret;

	ret = index_transaction_commit(t, changes_r);
	if ((sret = lmbox_store_sync(mbox->storage->store)) < 0) {
		lmbox_storage_set_error(box->storage, sret, "syncing the commit");
		ret = -1;
	}
	return ret;
}

static void lmbox_mailbox_close(struct mailbox *box)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);

	lmbox_mailbox_reader_end(mbox);
	index_storage_mailbox_close(box);
}

static int
lmbox_mailbox_exists(struct mailbox *box, bool auto_boxes,
		     enum mailbox_existence *existence_r)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	struct lmbox_folder_info info;
	int ret;

	if ((auto_boxes && mailbox_is_autocreated(box)) || box->inbox_any) {
		*existence_r = MAILBOX_EXISTENCE_SELECT;
		return 0;
	}
	if (lmbox_storage_open_store(mbox->storage) < 0)
		return -1;
	ret = lmbox_folder_lookup(mbox->storage->store, box->name, &info);
	if (ret == 0) {
		*existence_r = MAILBOX_EXISTENCE_SELECT;
		return 0;
	}
	if (ret != LMBOX_ERR_NOTFOUND) {
		lmbox_storage_set_error(box->storage, ret, "looking up folder");
		return -1;
	}
	/* not in the store: at most a directory holding children */
	if (index_storage_mailbox_exists_full(box, NULL, existence_r) < 0)
		return -1;
	if (*existence_r != MAILBOX_EXISTENCE_NONE)
		*existence_r = MAILBOX_EXISTENCE_NOSELECT;
	return 0;
}

static int
lmbox_mailbox_create(struct mailbox *box, const struct mailbox_update *update,
		     bool directory)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	struct lmbox_store *store;
	const uint8_t *guid = NULL;
	uint32_t id;
	enum mail_error error;
	int ret;

	if (lmbox_storage_open_store(mbox->storage) < 0)
		return -1;
	store = mbox->storage->store;

	ret = index_storage_mailbox_create(box, directory);
	if (ret < 0 && !directory) {
		/* The directory may exist without a store folder (the
		   parent of a child mailbox): the folder decides. */
		(void)mailbox_get_last_error(box, &error);
		if (error != MAIL_ERROR_EXISTS)
			return -1;
		ret = 1;
	}
	if (ret <= 0)
		return ret;

	if (update != NULL && !guid_128_is_empty(update->mailbox_guid))
		guid = update->mailbox_guid;
	ret = lmbox_folder_create(store, box->name,
				  update == NULL ? 0 : update->uid_validity,
				  guid, &id);
	if (ret < 0) {
		lmbox_storage_set_error(box->storage, ret, "creating folder");
		return -1;
	}
	if (update != NULL && update->min_next_uid > 1) {
		ret = lmbox_folder_update(store, id, 0, update->min_next_uid,
					  NULL);
		if (ret < 0) {
			lmbox_storage_set_error(box->storage, ret,
						"updating folder");
			return -1;
		}
	}
	if (mailbox_open(box) < 0)
		return -1;
	if (lmbox_sync(mbox, LMBOX_SYNC_FLAG_FORCE) < 0)
		return -1;
	return update == NULL ? 0 :
		index_storage_mailbox_update(box, update);
}

static int
lmbox_mailbox_update(struct mailbox *box, const struct mailbox_update *update)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	const uint8_t *guid = NULL;
	int ret;

	if (!box->opened) {
		if (mailbox_open(box) < 0)
			return -1;
	}
	if (!guid_128_is_empty(update->mailbox_guid))
		guid = update->mailbox_guid;
	if (update->uid_validity != 0 || update->min_next_uid != 0 ||
	    guid != NULL) {
		ret = lmbox_folder_update(mbox->storage->store, mbox->folder_id,
					  update->uid_validity,
					  update->min_next_uid, guid);
		if (ret < 0) {
			lmbox_storage_set_error(box->storage, ret,
						"updating folder");
			return -1;
		}
		if (guid != NULL)
			memcpy(mbox->guid, guid, sizeof(mbox->guid));
		/* a new UIDVALIDITY makes the sync rebuild the index */
		if (lmbox_sync(mbox, LMBOX_SYNC_FLAG_FORCE) < 0)
			return -1;
	}
	/* first_recent_uid, modseqs and cache decisions live in the index */
	return index_storage_mailbox_update(box, update);
}

static int lmbox_mailbox_delete(struct mailbox *box)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	int ret;

	if (lmbox_storage_open_store(mbox->storage) < 0)
		return -1;
	if ((ret = index_storage_mailbox_delete_pre(box)) <= 0)
		return ret;
	ret = lmbox_folder_delete(mbox->storage->store, box->name);
	if (ret < 0 && ret != LMBOX_ERR_NOTFOUND) {
		lmbox_storage_set_error(box->storage, ret, "deleting folder");
		return -1;
	}
	return index_storage_mailbox_delete_post(box);
}

/* Rename the store folder old_name and all folders below it. */
static int
lmbox_rename_folders(struct lmbox_storage *storage, char sep,
		     const char *old_name, const char *new_name)
{
	struct lmbox_folder_iter *iter;
	struct lmbox_folder_info info;
	ARRAY_TYPE(const_string) children;
	const char *prefix, *child;
	size_t prefix_len;
	int ret;

	ret = lmbox_folder_rename(storage->store, old_name, new_name);
	if (ret < 0 && ret != LMBOX_ERR_NOTFOUND)
		goto failed;

	prefix = t_strdup_printf("%s%c", old_name, sep);
	prefix_len = strlen(prefix);
	t_array_init(&children, 8);
	if ((ret = lmbox_folder_iter_init(storage->store, &iter)) < 0)
		goto failed;
	while ((ret = lmbox_folder_iter_next(iter, &info)) > 0) {
		if (strncmp(info.name, prefix, prefix_len) == 0) {
			child = t_strdup(info.name);
			array_push_back(&children, &child);
		}
	}
	lmbox_folder_iter_deinit(&iter);
	if (ret < 0)
		goto failed;
	array_foreach_elem(&children, child) {
		ret = lmbox_folder_rename(storage->store, child,
			t_strdup_printf("%s%c%s", new_name, sep,
					child + prefix_len));
		if (ret < 0)
			goto failed;
	}
	return 0;
failed:
	lmbox_storage_set_error(&storage->storage, ret, "renaming folder");
	return -1;
}

static int lmbox_mailbox_rename(struct mailbox *src, struct mailbox *dest)
{
	struct lmbox_storage *storage = LMBOX_STORAGE(src->storage);
	char sep = mailbox_list_get_hierarchy_sep(src->list);
	struct lmbox_folder_info info;
	int ret;

	if (src->storage != dest->storage) {
		mail_storage_set_error(src->storage, MAIL_ERROR_NOTPOSSIBLE,
			"Can't rename mailboxes between lmbox stores");
		return -1;
	}
	if (lmbox_storage_open_store(storage) < 0)
		return -1;
	ret = lmbox_folder_lookup(storage->store, dest->name, &info);
	if (ret == 0) {
		mail_storage_set_error(src->storage, MAIL_ERROR_EXISTS,
				       "Target mailbox already exists");
		return -1;
	}
	/* The store first: index_storage_mailbox_rename() opens the
	   destination, which must then exist.  If renaming the directories
	   fails, the store is renamed back. */
	T_BEGIN {
		ret = lmbox_rename_folders(storage, sep, src->name, dest->name);
	} T_END;
	if (ret < 0)
		return -1;
	if (index_storage_mailbox_rename(src, dest) < 0) {
		T_BEGIN {
			(void)lmbox_rename_folders(storage, sep, dest->name,
						   src->name);
		} T_END;
		return -1;
	}
	return 0;
}

static int
lmbox_mailbox_get_metadata(struct mailbox *box,
			   enum mailbox_metadata_items items,
			   struct mailbox_metadata *metadata_r)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	struct lmbox_folder_info info;
	enum mailbox_metadata_items size_items =
		MAILBOX_METADATA_VIRTUAL_SIZE | MAILBOX_METADATA_PHYSICAL_SIZE;
	int ret;

	if ((items & (size_items | MAILBOX_METADATA_GUID)) != 0) {
		if (!box->opened && mailbox_open(box) < 0)
			return -1;
	}
	if ((items & size_items) != 0) {
		/* O(1) from the store's folder totals */
		ret = lmbox_folder_get(mbox->storage->store, mbox->folder_id,
				       &info);
		if (ret < 0) {
			lmbox_storage_set_error(box->storage, ret,
						"reading folder");
			return -1;
		}
		metadata_r->virtual_size = info.vsize_total;
		metadata_r->physical_size = info.psize_total;
		items &= ENUM_NEGATE(size_items);
	}
	if (index_mailbox_get_metadata(box, items, metadata_r) < 0)
		return -1;
	if ((items & MAILBOX_METADATA_GUID) != 0)
		memcpy(metadata_r->guid, mbox->guid, sizeof(metadata_r->guid));
	return 0;
}

/* The mailbox list index caches STATUS of mailboxes that aren't open.
   Its record also keeps the store change_counter the mailbox index
   mirrored, so that changes made to the store alone (lmbox CLI) show. */
#define LMBOX_LIST_EXT_NAME "lmbox-list"

static uint32_t lmbox_list_ext_id(struct mail_index *list_index)
{
	return mail_index_ext_register(list_index, LMBOX_LIST_EXT_NAME, 0,
				       sizeof(uint64_t), sizeof(uint64_t));
}

static int
lmbox_list_index_has_changed(struct mailbox *box,
			     struct mail_index_view *list_view,
			     uint32_t seq, bool quick, const char **reason_r)
{
	struct lmbox_storage *storage = LMBOX_STORAGE(box->storage);
	struct lmbox_folder_info info;
	const void *data;
	uint64_t counter;
	bool expunged;
	int ret;

	ret = index_storage_list_index_has_changed(box, list_view, seq,
						   quick, reason_r);
	if (ret != 0)
		return ret;
	mail_index_lookup_ext(list_view, seq,
			      lmbox_list_ext_id(list_view->index),
			      &data, &expunged);
	if (data == NULL) {
		*reason_r = "lmbox store counter not recorded";
		return 1;
	}
	memcpy(&counter, data, sizeof(counter));
	if (lmbox_storage_open_store(storage) < 0)
		return -1;
	ret = lmbox_folder_lookup(storage->store, box->name, &info);
	if (ret == LMBOX_ERR_NOTFOUND || (ret == 0 &&
					  info.change_counter != counter)) {
		*reason_r = "lmbox store changed";
		return 1;
	}
	if (ret < 0) {
		lmbox_storage_set_error(box->storage, ret, "looking up folder");
		return -1;
	}
	return 0;
}

static void
lmbox_list_index_update_sync(struct mailbox *box,
			     struct mail_index_transaction *trans,
			     uint32_t seq)
{
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(box);
	struct lmbox_index_header hdr;
	struct mail_index_view *view;

	index_storage_list_index_update_sync(box, trans, seq);
	if (!box->opened || box->index == NULL)
		return;
	view = mail_index_view_open(box->index);
	if (lmbox_read_index_header(mbox, view, &hdr) > 0) {
		mail_index_update_ext(trans, seq,
			lmbox_list_ext_id(mail_index_view_get_index(
				mail_index_transaction_get_view(trans))),
			&hdr.change_counter, NULL);
	}
	mail_index_view_close(&view);
}

static void lmbox_notify_changes(struct mailbox *box)
{
	const char *dir, *path;

	if (box->notify_callback == NULL) {
		mailbox_watch_remove_all(box);
		return;
	}
	if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_INDEX, &dir) <= 0)
		return;
	path = t_strdup_printf("%s/"MAIL_INDEX_PREFIX".log", dir);
	mailbox_watch_add(box, path);
	/* changes made to the store alone (lmbox CLI, other index dirs) */
	mailbox_watch_add(box, t_strdup_printf("%s/lmbox.mdb",
			  LMBOX_MAILBOX(box)->storage->store_dir));
}

struct mailbox lmbox_mailbox = {
	.v = {
		.is_readonly = index_storage_is_readonly,
		.enable = index_storage_mailbox_enable,
		.exists = lmbox_mailbox_exists,
		.open = lmbox_mailbox_open,
		.close = lmbox_mailbox_close,
		.free = index_storage_mailbox_free,
		.create_box = lmbox_mailbox_create,
		.update_box = lmbox_mailbox_update,
		.delete_box = lmbox_mailbox_delete,
		.rename_box = lmbox_mailbox_rename,
		.get_status = index_storage_get_status,
		.get_metadata = lmbox_mailbox_get_metadata,
		.set_subscribed = index_storage_set_subscribed,
		.attribute_set = index_storage_attribute_set,
		.attribute_get = index_storage_attribute_get,
		.attribute_iter_init = index_storage_attribute_iter_init,
		.attribute_iter_next = index_storage_attribute_iter_next,
		.attribute_iter_deinit = index_storage_attribute_iter_deinit,
		.list_index_has_changed = lmbox_list_index_has_changed,
		.list_index_update_sync = lmbox_list_index_update_sync,
		.sync_init = lmbox_storage_sync_init,
		.sync_next = index_mailbox_sync_next,
		.sync_deinit = index_mailbox_sync_deinit,
		.notify_changes = lmbox_notify_changes,
		.transaction_begin = index_transaction_begin,
		.transaction_commit = lmbox_transaction_commit,
		.transaction_rollback = index_transaction_rollback,
		.mail_alloc = lmbox_mail_alloc,
		.search_init = lmbox_search_init,
		.search_deinit = lmbox_search_deinit,
		.search_next_nonblock = lmbox_search_next_nonblock,
		.search_next_update_seq = index_storage_search_next_update_seq,
		.search_next_match_mail = index_storage_search_next_match_mail,
		.save_alloc = lmbox_save_alloc,
		.save_begin = lmbox_save_begin,
		.save_continue = lmbox_save_continue,
		.save_finish = lmbox_save_finish,
		.save_cancel = lmbox_save_cancel,
		.copy = lmbox_copy,
		.transaction_save_commit_pre = lmbox_transaction_save_commit_pre,
		.transaction_save_commit_post = lmbox_transaction_save_commit_post,
		.transaction_save_rollback = lmbox_transaction_save_rollback,
		.is_inconsistent = index_storage_is_inconsistent,
	},
};
