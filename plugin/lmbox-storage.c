/*
 * lmbox-storage.c: the "lmbox" storage class and its mailboxes.
 *
 * One liblmbox store per mail root (mail_location = lmbox:~/lmbox), opened
 * when the storage is created and closed when it is destroyed (user
 * deinit).  Folder names in the store are Dovecot's storage names; a store
 * folder is what makes a mailbox exist, and every store folder gets its
 * directory under ROOT/mailboxes/ so the fs mailbox list shows it.
 * Dovecot's index files live in those directories and are only a cache.
 * The mailboxes themselves are in lmbox-mailbox.c.
 *
 * Diagnostics: store failures are reported as "lmbox: <store message>"
 * through mail_storage_set_critical() (client sees a temporary failure) or
 * as a plain NOTFOUND/EXISTS/NOQUOTA error.
 */
#include "lib.h"
#include "array.h"
#include "str.h"
#include "mkdir-parents.h"
#include "settings-parser.h"
#include "fsync-mode.h"
#include "mail-user.h"
#include "mailbox-list-private.h"
#include "index-mail.h"
#include "lmbox-storage.h"

#include <sys/stat.h>

static struct event_category event_category_lmbox = {
	.name = "lmbox",
	.parent = &event_category_storage,
};

void lmbox_mailbox_report_corrupt(struct mailbox *box,
				  const struct lmbox_msg_iter *iter)
{
	struct lmbox_storage *storage = LMBOX_STORAGE(box->storage);
	unsigned int n = lmbox_msg_iter_corrupt(iter);

	if (n == 0)
		return;
	e_error(box->event, "lmbox: %u damaged message record(s) in %s "
		"skipped, the other messages are served (last: %s); "
		"lmbox check --repair moves them to lost+found", n, box->vname,
		lmbox_store_errmsg(storage->store));
}

void lmbox_storage_set_error(struct mail_storage *storage, int err,
			     const char *what)
{
	struct lmbox_storage *lstorage = LMBOX_STORAGE(storage);
	const char *msg = lstorage->store == NULL ? lmbox_strerror(err) :
		lmbox_store_errmsg(lstorage->store);

	switch (err) {
	case LMBOX_ERR_NOTFOUND:
		mail_storage_set_error(storage, MAIL_ERROR_NOTFOUND,
				       "Mailbox or message not found");
		break;
	case LMBOX_ERR_EXISTS:
		mail_storage_set_error(storage, MAIL_ERROR_EXISTS,
				       "Mailbox already exists");
		break;
	case LMBOX_ERR_NOSPACE:
		e_error(storage->event, "lmbox: %s: %s", what, msg);
		mail_storage_set_error(storage, MAIL_ERROR_NOQUOTA,
				       "Not enough disk space");
		break;
	case LMBOX_ERR_TOOBIG:
		mail_storage_set_error(storage, MAIL_ERROR_LIMIT,
				       "Message is too large");
		break;
	default:
		mail_storage_set_critical(storage, "lmbox: %s: %s", what, msg);
		break;
	}
}

bool lmbox_is_lmbox_mailbox(struct mailbox *box)
{
	return strcmp(box->storage->name, LMBOX_STORAGE_NAME) == 0;
}

/* ------------------------------------------------------------- storage */

static struct mail_storage *lmbox_storage_alloc(void)
{
	struct lmbox_storage *storage;
	pool_t pool;

	pool = pool_alloconly_create("lmbox storage", 1024);
	storage = p_new(pool, struct lmbox_storage, 1);
	storage->storage = lmbox_storage;
	storage->storage.pool = pool;
	return &storage->storage;
}

static int
lmbox_setting_size(struct mail_user *user, struct event *event,
		   const char *name,
		   uint64_t *value, const char **error_r)
{
	const char *str = lmbox_setting_str(user, event, name), *error;
	uoff_t size;

	if (str == NULL || *str == '\0')
		return 0;
	if (lmbox_parse_size(str, &size, &error) < 0) {
		*error_r = t_strdup_printf("Invalid %s setting: %s", name, error);
		return -1;
	}
	*value = size;
	return 0;
}

static int
lmbox_store_opts_from_settings(struct mail_storage *storage,
			       struct mail_namespace *ns,
			       struct lmbox_store_opts *opts,
			       const char **error_r)
{
	struct mail_user *user = storage->user;
	struct mailbox_permissions perm;
	const char *str;
	unsigned int num;

	lmbox_store_opts_init(opts);
	/* A deletion's space is given back when the store is closed
	   (lmbox_storage_destroy), after the client has its answer: pop3's
	   client_destroy frees the mailbox while "+OK Logging out" may still
	   sit in the corked socket, but closes the socket before
	   mail_user_deinit().  Every store open (each LMTP delivery) also
	   redoes what is left. */
	opts->flags |= LMBOX_OPEN_CREATE | LMBOX_OPEN_DEFER_RECLAIM;

	str = lmbox_setting_str(user, storage->event, "lmbox_compress_level");
	if (str != NULL && *str != '\0') {
		if (str_to_uint(str, &num) < 0 || num > 9) {
			*error_r = "Invalid lmbox_compress_level setting "
				"(expected 0-9)";
			return -1;
		}
		opts->compress_level = num;
	}
	str = lmbox_setting_str(user, storage->event, "lmbox_max_readers");
	if (str != NULL && *str != '\0') {
		if (str_to_uint(str, &num) < 0) {
			*error_r = "Invalid lmbox_max_readers setting";
			return -1;
		}
		opts->max_readers = num;
	}
	if (lmbox_setting_size(user, storage->event, "lmbox_map_initial",
			       &opts->map_initial, error_r) < 0 ||
	    lmbox_setting_size(user, storage->event, "lmbox_map_max",
			       &opts->map_max, error_r) < 0 ||
	    lmbox_setting_size(user, storage->event, "lmbox_segment_max",
			       &opts->segment_max, error_r) < 0)
		return -1;

	switch (storage->set->parsed_fsync_mode) {
	case FSYNC_MODE_ALWAYS:
		opts->fsync = LMBOX_FSYNC_ALWAYS;
		break;
	case FSYNC_MODE_OPTIMIZED:
		opts->fsync = LMBOX_FSYNC_OPTIMIZED;
		break;
	case FSYNC_MODE_NEVER:
		opts->fsync = LMBOX_FSYNC_NEVER;
		break;
	}
	mailbox_list_get_root_permissions(ns->list, &perm);
	opts->file_mode = perm.file_create_mode;
	return 0;
}

/* Make sure every store folder has its directory, so that the fs list
   shows it (e.g. after the index directories were deleted, or a folder was
   created with the lmbox CLI). */
static int lmbox_storage_sync_dirs(struct lmbox_storage *storage,
				   struct mailbox_list *list)
{
	struct lmbox_folder_iter *iter;
	struct lmbox_folder_info info;
	struct mailbox_permissions perm;
	const char *path;
	struct stat st;
	int ret;

	mailbox_list_get_root_permissions(list, &perm);
	if ((ret = lmbox_folder_iter_init(storage->store, &iter)) < 0) {
		lmbox_storage_set_error(&storage->storage, ret,
					"listing folders");
		return -1;
	}
	while ((ret = lmbox_folder_iter_next(iter, &info)) > 0) T_BEGIN {
		if (mailbox_list_get_path(list, info.name,
					  MAILBOX_LIST_PATH_TYPE_MAILBOX,
					  &path) > 0 &&
		    stat(path, &st) < 0 && errno == ENOENT) {
			if (mkdir_parents(path, perm.dir_create_mode) < 0 &&
			    errno != EEXIST) {
				e_error(storage->storage.event,
					"lmbox: mkdir_parents(%s) failed: %m",
					path);
			}
		}
	} T_END;
	lmbox_folder_iter_deinit(&iter);
	if (ret < 0) {
		lmbox_storage_set_error(&storage->storage, ret,
					"listing folders");
		return -1;
	}
	return 0;
}

int lmbox_storage_open_store(struct lmbox_storage *storage)
{
	const char *errmsg = NULL;
	int ret;

	if (storage->store != NULL)
		return 0;
	ret = lmbox_store_open(storage->store_dir, &storage->opts,
			       &storage->store, &errmsg);
	if (ret < 0) {
		storage->store = NULL;
		mail_storage_set_critical(&storage->storage,
			"lmbox: Opening store %s failed: %s", storage->store_dir,
			errmsg != NULL ? errmsg : lmbox_strerror(ret));
		return -1;
	}
	/* a failure here only hides mailboxes from LIST; it was logged */
	(void)lmbox_storage_sync_dirs(storage, storage->list);
	return 0;
}

static int lmbox_storage_create(struct mail_storage *_storage,
				struct mail_namespace *ns,
				const char **error_r)
{
	struct lmbox_storage *storage = LMBOX_STORAGE(_storage);
	const char *root, *str;

	if (!mailbox_list_get_root_path(ns->list, MAILBOX_LIST_PATH_TYPE_DIR,
					&root)) {
		*error_r = "lmbox: mail root directory not set "
			"(" LMBOX_MAIL_PATH_HINT ")";
		return -1;
	}
	storage->store_dir = p_strdup(_storage->pool, root);
	storage->list = ns->list;
	if (lmbox_store_opts_from_settings(_storage, ns, &storage->opts,
					   error_r) < 0)
		return -1;
	str = lmbox_setting_str(_storage->user, _storage->event,
				"lmbox_log_body_opens");
	storage->log_body_opens = str != NULL &&
		(strcmp(str, "yes") == 0 || strcmp(str, "1") == 0);
	storage->body_opens_at_start = lmbox_body_open_count();

	/* Open now so that every store folder has its directory before the
	   first LIST.  A failure (unwritable root, corrupt store) is logged
	   here and reported to the client by the first mailbox access. */
	if (lmbox_storage_open_store(storage) < 0) {
		e_error(_storage->event, "%s",
			mail_storage_get_last_internal_error(_storage, NULL));
	}
	return 0;
}

static void lmbox_storage_destroy(struct mail_storage *_storage)
{
	struct lmbox_storage *storage = LMBOX_STORAGE(_storage);
	uint64_t opens = lmbox_body_open_count() - storage->body_opens_at_start;

	/* For tests: prove from the log that a session read no body. */
	if (storage->log_body_opens) {
		i_info("lmbox: user=%s bodies_opened=%"PRIu64,
		       _storage->user->username, opens);
	} else {
		e_debug(_storage->event, "lmbox: user=%s bodies_opened=%"PRIu64,
			_storage->user->username, opens);
	}
	/* The deferred work (pending expunges, space given back) that the
	   close would do anyway, here so that a failure reaches the log; what
	   failed stays recorded and the next write of any process redoes it. */
	if (storage->store != NULL && lmbox_store_reclaim(storage->store) < 0) {
		e_error(_storage->event,
			"lmbox: %s: applying deferred expunges / giving back space "
			"at close failed (retried by the next write): %s",
			lmbox_store_path(storage->store),
			lmbox_store_errmsg(storage->store));
	}
	lmbox_store_close(&storage->store);
	index_storage_destroy(_storage);
}

#if !LMBOX_DOVECOT24
/* 2.4: the same defaults are lmbox/ default_settings (lmbox-settings.c) */
static void
lmbox_storage_get_list_settings(const struct mail_namespace *ns ATTR_UNUSED,
				struct mailbox_list_settings *set)
{
	if (set->layout == NULL)
		set->layout = MAILBOX_LIST_NAME_FS;
	if (set->subscription_fname == NULL)
		set->subscription_fname = LMBOX_SUBSCRIPTION_FILE_NAME;
	if (*set->mailbox_dir_name == '\0')
		set->mailbox_dir_name = LMBOX_MAILBOX_DIR_NAME;
}
#endif

struct mail_storage lmbox_storage = {
	.name = LMBOX_STORAGE_NAME,
	.class_flags = MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_GUIDS |
		MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_SAVE_GUIDS |
		/* not BINARY_DATA: that would make the zlib plugin compress
		   what the store compresses already */
		MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_GUID128,
	.event_category = &event_category_lmbox,
	LMBOX_STORAGE_CLASS_SET
	.v = {
		.alloc = lmbox_storage_alloc,
		.create = lmbox_storage_create,
		.destroy = lmbox_storage_destroy,
#if !LMBOX_DOVECOT24
		.get_list_settings = lmbox_storage_get_list_settings,
#endif
		.mailbox_alloc = lmbox_mailbox_alloc,
		.list_index_rebuild = mail_storage_list_index_rebuild,
	},
};

