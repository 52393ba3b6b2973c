/*
 * lmbox-meta.c: message metadata lookups of a mailbox, dense for walks.
 *
 * A single message's metadata is one B-tree lookup in the mailbox's read
 * snapshot.  POP3's login walk, LIST and UIDL ask every message in turn;
 * once a snapshot has served LMBOX_META_DENSE_AFTER lookups, the folder's
 * metadata is read once sequentially (one cursor pass, no random page
 * touches) into a UID-sorted array and the rest of the walk is answered
 * from it by binary search.  The array belongs to the snapshot: it is
 * dropped with it at the next sync, so it never shows more or less than
 * the snapshot does.  Keywords are not kept (the walk never needs them).
 */
#include "lib.h"
#include "array.h"
#include "lmbox-storage.h"

#define LMBOX_META_DENSE_AFTER 32
/* ~130 bytes a message: bounded well below Dovecot's default 256 MB
   vsz_limit; larger folders are answered by lookups */
#define LMBOX_META_DENSE_MAX 250000
/* the dense array's UIDLs are copied into blocks of this size */
#define LMBOX_META_UIDL_BLOCK (64 * 1024)

static int lmbox_meta_uid_cmp(const uint32_t *uid,
			      const struct lmbox_msg_meta *meta)
{
	return *uid < meta->uid ? -1 : (*uid > meta->uid ? 1 : 0);
}

void lmbox_meta_cache_clear(struct lmbox_mailbox *mbox)
{
	if (array_is_created(&mbox->meta_cache))
		array_free(&mbox->meta_cache);
	pool_unref(&mbox->meta_pool);
	mbox->meta_gen++;
	mbox->meta_lookups = 0;
	mbox->meta_hint = 0;
}

static int lmbox_meta_cache_build(struct lmbox_mailbox *mbox)
{
	struct lmbox_reader *reader;
	struct lmbox_msg_iter *iter;
	struct lmbox_msg_meta meta;
	struct lmbox_folder_info info;
	char *uidls = NULL;
	size_t len, left = 0;
	int ret;

	if ((reader = lmbox_mailbox_get_reader(mbox)) == NULL)
		return -1;
	if ((ret = lmbox_reader_folder(reader, mbox->folder_id, &info)) < 0)
		goto failed;
	if (info.count > LMBOX_META_DENSE_MAX) {
		/* not for this snapshot */
		mbox->meta_lookups = UINT_MAX;
		return 0;
	}
	if ((ret = lmbox_msg_iter_init(reader, mbox->folder_id, 1, &iter)) < 0)
		goto failed;
	/* every UIDL is copied at once: no need for the reader's copy */
	lmbox_msg_iter_set_borrow(iter);
	mbox->meta_pool = pool_alloconly_create("lmbox meta cache",
						LMBOX_META_UIDL_BLOCK + 256);
	i_array_init(&mbox->meta_cache, info.count + 1);
	while ((ret = lmbox_msg_iter_next(iter, &meta)) > 0) {
		/* the UIDLs back to back in large blocks of the pool */
		len = strlen(meta.uidl) + 1;
		if (len > left) {
			left = I_MAX(len, LMBOX_META_UIDL_BLOCK);
			uidls = p_malloc(mbox->meta_pool, left);
		}
		memcpy(uidls, meta.uidl, len);
		meta.uidl = uidls;
		uidls += len;
		left -= len;
		meta.keywords = NULL;
		meta.kw_count = 0;
		array_push_back(&mbox->meta_cache, &meta);
	}
	lmbox_mailbox_report_corrupt(&mbox->box, iter);
	lmbox_msg_iter_deinit(&iter);
	if (ret == 0)
		return 0;
failed:
	lmbox_meta_cache_clear(mbox);
	lmbox_storage_set_error(mbox->box.storage, ret,
		t_strdup_printf("reading folder %s", mbox->box.vname));
	return -1;
}

const struct lmbox_msg_meta *
lmbox_meta_dense_find(struct lmbox_mailbox *mbox, uint32_t uid)
{
	const struct lmbox_msg_meta *meta, *metas;
	unsigned int i, count;

	if (!array_is_created(&mbox->meta_cache))
		return NULL;
	metas = array_get(&mbox->meta_cache, &count);
	/* walks go in UID order: try right after the last hit */
	i = mbox->meta_hint;
	if (i < count && metas[i].uid == uid)
		meta = &metas[i];
	else if (i + 1 < count && metas[i + 1].uid == uid)
		meta = &metas[++i];
	else {
		meta = array_bsearch(&mbox->meta_cache, &uid,
				     lmbox_meta_uid_cmp);
		if (meta == NULL)
			return NULL;
		i = meta - metas;
	}
	mbox->meta_hint = i;
	return meta;
}

int lmbox_meta_lookup(struct lmbox_mailbox *mbox, uint32_t uid,
		      struct lmbox_msg_meta *meta_r)
{
	const struct lmbox_msg_meta *meta;

	if (!array_is_created(&mbox->meta_cache) &&
	    mbox->meta_lookups != UINT_MAX &&
	    ++mbox->meta_lookups > LMBOX_META_DENSE_AFTER) {
		if (lmbox_meta_cache_build(mbox) < 0)
			return -1;
	}
	if ((meta = lmbox_meta_dense_find(mbox, uid)) != NULL) {
		*meta_r = *meta;
		return 1;
	}
	/* no dense array, or newer than the snapshot (saved since): look it
	   up in a fresh one */
	return lmbox_mailbox_msg_lookup(mbox, uid, meta_r);
}
