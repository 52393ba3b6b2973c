/*
 * lmbox-mail.c: a message of an lmbox mailbox (an index_mail subclass).
 *
 * Sizes, dates, GUID, POP3 UIDL and POP3 order come from the store's
 * metadata of the message, never from its body, so POP3's login walk,
 * STAT, LIST and UIDL open no body.  The body stream is decompressed and
 * checked against its checksum completely before the first byte is handed
 * out (in memory for small messages, in an unlinked temp file for large
 * ones), so a corrupt body fails the read instead of sending wrong bytes.
 */
#include "lib.h"
#include "istream.h"
#include "str.h"
#include "safe-mkstemp.h"
#include "write-full.h"
#include "mail-user.h"
#include "index-mail.h"
#include "lmbox-storage.h"

#include <unistd.h>

/* Bodies up to this size are decompressed into memory. */
#define LMBOX_BODY_MEMORY_MAX (4 * 1024 * 1024)
#define LMBOX_BODY_READ_CHUNK (64 * 1024)

struct lmbox_mail {
	struct index_mail imail;

	/* metadata of the message: keywords cleared, uidl valid only while
	   the mailbox's meta_gen is still meta_gen */
	struct lmbox_msg_meta meta;
	/* UIDL copied into the data pool, once asked for */
	const char *uidl;
	uint32_t meta_uid;
	unsigned int meta_gen;
	bool meta_loaded;
};

#define LMBOX_MAIL(s) (container_of(INDEX_MAIL(s), struct lmbox_mail, imail))

struct mail *
lmbox_mail_alloc(struct mailbox_transaction_context *t,
		 enum mail_fetch_field wanted_fields,
		 struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct lmbox_mail *mail;
	pool_t pool;

	pool = pool_alloconly_create("mail", 2048);
	mail = p_new(pool, struct lmbox_mail, 1);
	index_mail_init(&mail->imail, t, wanted_fields, wanted_headers,
			pool, NULL);
	return &mail->imail.mail.mail;
}

static void lmbox_mail_close(struct mail *_mail)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);

	index_mail_close(_mail);
	mail->meta_loaded = FALSE;
	mail->uidl = NULL;
}

/* Load the message's metadata.  0 ok, -1 error or expunged (set). */
static int lmbox_mail_load(struct lmbox_mail *mail)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(_mail->box);
	int ret;

	if (mail->meta_loaded && mail->meta_uid == _mail->uid)
		return 0;
	mail->meta_loaded = FALSE;
	ret = lmbox_meta_lookup(mbox, _mail->uid, &mail->meta);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		mail_set_expunged(_mail);
		return -1;
	}
	/* The walk (POP3 login, LIST) asks only sizes: the UIDL is copied
	   when asked for, and the sizes are left out of index_mail's data,
	   whose close would otherwise offer them to the cache file (or the
	   index's vsize extension) for every message. */
	mail->meta_gen = mbox->meta_gen;
	mail->meta.keywords = NULL;
	mail->meta.kw_count = 0;
	mail->uidl = NULL;
	mail->meta_uid = _mail->uid;
	mail->meta_loaded = TRUE;
	return 0;
}

/* The message's UIDL, valid as long as the mail's data.  0 ok, -1 error. */
static int lmbox_mail_get_uidl(struct lmbox_mail *mail, const char **uidl_r)
{
	struct mail *_mail = &mail->imail.mail.mail;
	const struct lmbox_msg_meta *dense;
	struct lmbox_msg_meta meta;
	int ret;

	if (mail->uidl == NULL &&
	    (dense = lmbox_meta_dense_find(LMBOX_MAILBOX(_mail->box),
					   _mail->uid)) != NULL) {
		/* UIDL's walk: straight from the dense array */
		mail->uidl = p_strdup(mail->imail.mail.data_pool, dense->uidl);
	}
	if (mail->uidl != NULL) {
		*uidl_r = mail->uidl;
		return 0;
	}
	if (lmbox_mail_load(mail) < 0)
		return -1;
	if (mail->uidl == NULL &&
	    mail->meta_gen == LMBOX_MAILBOX(_mail->box)->meta_gen) {
		/* the lookup's string is still there */
		mail->uidl = p_strdup(mail->imail.mail.data_pool,
				      mail->meta.uidl);
	}
	if (mail->uidl == NULL) {
		/* the dense array's hint makes this O(1) in a walk */
		ret = lmbox_meta_lookup(LMBOX_MAILBOX(_mail->box), _mail->uid,
					&meta);
		if (ret < 0)
			return -1;
		if (ret == 0) {
			mail_set_expunged(_mail);
			return -1;
		}
		mail->uidl = p_strdup(mail->imail.mail.data_pool, meta.uidl);
	}
	*uidl_r = mail->uidl;
	return 0;
}

static bool lmbox_mail_prefetch(struct mail *_mail ATTR_UNUSED)
{
	/* nothing to prefetch: metadata lookups are cheap and bodies are
	   read only when asked for */
	return TRUE;
}

static int lmbox_mail_get_received_date(struct mail *_mail, time_t *date_r)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);

	if (_mail->saving)
		return index_mail_get_received_date(_mail, date_r);
	if (lmbox_mail_load(mail) < 0)
		return -1;
	*date_r = mail->imail.data.received_date =
		(time_t)mail->meta.received_date;
	return 0;
}

static int lmbox_mail_get_save_date(struct mail *_mail, time_t *date_r)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);

	if (_mail->saving)
		return index_mail_get_save_date(_mail, date_r);
	if (lmbox_mail_load(mail) < 0)
		return -1;
	*date_r = mail->imail.data.save_date = (time_t)mail->meta.save_date;
	return 1;
}

static int lmbox_mail_get_virtual_size(struct mail *_mail, uoff_t *size_r)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);
	const struct lmbox_msg_meta *dense;
	const void *data;

	if (_mail->saving)
		return index_mail_get_virtual_size(_mail, size_r);
	/* the size the store recorded at save time, in the index record:
	   the login walk and LIST need no store metadata at all */
	mail_index_lookup_ext(_mail->transaction->view, _mail->seq,
			      LMBOX_MAILBOX(_mail->box)->vsize_ext_id, &data, NULL);
	if (data != NULL && *(const uint32_t *)data != 0) {
		*size_r = *(const uint32_t *)data;
		return 0;
	}
	if ((dense = lmbox_meta_dense_find(LMBOX_MAILBOX(_mail->box),
					   _mail->uid)) != NULL) {
		/* the login walk's and LIST's case: no copy into the mail */
		*size_r = dense->virt_size;
		return 0;
	}
	if (lmbox_mail_load(mail) < 0)
		return -1;
	*size_r = mail->meta.virt_size;
	return 0;
}

static int lmbox_mail_get_physical_size(struct mail *_mail, uoff_t *size_r)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);

	if (_mail->saving)
		return index_mail_get_physical_size(_mail, size_r);
	if (lmbox_mail_load(mail) < 0)
		return -1;
	*size_r = mail->meta.phys_size;
	return 0;
}

static int
lmbox_mail_get_special(struct mail *_mail, enum mail_fetch_field field,
		       const char **value_r)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);

	switch (field) {
	case MAIL_FETCH_UIDL_BACKEND:
	case MAIL_FETCH_POP3_ORDER:
	case MAIL_FETCH_GUID:
		break;
	default:
		return index_mail_get_special(_mail, field, value_r);
	}
	if (_mail->saving)
		return index_mail_get_special(_mail, field, value_r);
	if (field == MAIL_FETCH_UIDL_BACKEND) {
		/* the store's own default is Dovecot's default format */
		return lmbox_mail_get_uidl(mail, value_r);
	}
	if (lmbox_mail_load(mail) < 0)
		return -1;

	switch (field) {
	case MAIL_FETCH_POP3_ORDER:
		/* "" (not "0") sorts messages without an order last */
		*value_r = mail->meta.pop3_order == 0 ? "" :
			p_strdup_printf(mail->imail.mail.data_pool, "%u",
					mail->meta.pop3_order);
		break;
	case MAIL_FETCH_GUID:
		*value_r = p_strdup(mail->imail.mail.data_pool,
				    guid_128_to_string(mail->meta.guid));
		break;
	default:
		i_unreached();
	}
	return 0;
}

static void lmbox_body_free(unsigned char *data)
{
	free(data);
}

/* The whole decompressed, verified body as an istream. */
static int
lmbox_mail_open_body(struct lmbox_mail *mail, struct istream **input_r)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(_mail->box);
	struct lmbox_store *store = mbox->storage->store;
	struct lmbox_body *body;
	struct lmbox_msg_meta meta;
	const char *errmsg;
	unsigned char *data = NULL;
	size_t used = 0, alloc;
	string_t *path = NULL;
	int fd = -1, ret;
	ssize_t n;

	ret = lmbox_body_open(store, &mail->meta, &body);
	if (ret < 0)
		goto store_failed;

	if (mail->meta.phys_size <= LMBOX_BODY_MEMORY_MAX) {
		/* one extra byte notices a body longer than its metadata;
		   malloc, not i_malloc: every byte used is written first, and
		   i_malloc's calloc would clear the whole body beforehand */
		alloc = mail->meta.phys_size + 1;
		data = malloc(alloc);
		if (data == NULL) {
			mail_set_critical(_mail, "lmbox: out of memory for "
					  "a %zu byte body", alloc);
			lmbox_body_close(&body);
			return -1;
		}
		while ((n = lmbox_body_read(body, data + used,
					    alloc - used)) > 0) {
			used += n;
			if (used == alloc)
				break;
		}
	} else {
		path = t_str_new(256);
		mail_user_set_get_temp_prefix(path, _mail->box->storage->user->set);
		fd = safe_mkstemp_hostpid(path, 0600, (uid_t)-1, (gid_t)-1);
		if (fd == -1) {
			mail_set_critical(_mail, "lmbox: safe_mkstemp(%s) failed: %m",
					  str_c(path));
			lmbox_body_close(&body);
			return -1;
		}
		i_unlink(str_c(path));
		alloc = LMBOX_BODY_READ_CHUNK;
		data = i_malloc(alloc);
		/* i_free() below leaves data NULL for the free()s after it */
		while ((n = lmbox_body_read(body, data, alloc)) > 0) {
			if (write_full(fd, data, n) < 0) {
				mail_set_critical(_mail,
					"lmbox: write(%s) failed: %m",
					str_c(path));
				lmbox_body_close(&body);
				i_free(data);
				i_close_fd(&fd);
				return -1;
			}
			used += n;
		}
		i_free(data);
	}
	lmbox_body_close(&body);
	/* e.g. the store dictionary was read from its file: worth a repair */
	if ((errmsg = lmbox_store_take_warning(store)) != NULL)
		e_warning(_mail->box->event, "lmbox: %s", errmsg);
	if (n < 0) {
		ret = (int)n;
		free(data);
		if (fd != -1)
			i_close_fd(&fd);
		goto store_failed;
	}
	if (used != mail->meta.phys_size) {
		free(data);
		if (fd != -1)
			i_close_fd(&fd);
		mail_set_critical(_mail,
			"lmbox: body of %s UID %u has %zu bytes, "
			"metadata says %"PRIu64, _mail->box->vname, _mail->uid,
			used, mail->meta.phys_size);
		return -1;
	}

	if (fd == -1) {
		*input_r = i_stream_create_from_data(data, used);
		i_stream_add_destroy_callback(*input_r, lmbox_body_free, data);
	} else {
		*input_r = i_stream_create_fd_autoclose(&fd, IO_BLOCK_SIZE);
	}
	i_stream_set_name(*input_r, t_strdup_printf("lmbox %s UID %u",
				mailbox_get_vname(_mail->box), _mail->uid));
	return 0;

store_failed:
	errmsg = t_strdup(lmbox_store_errmsg(store));
	/* The snapshot may be older than an expunge whose space was already
	   reclaimed: in a fresh one, a vanished message is just expunged. */
	lmbox_mailbox_reader_end(mbox);
	if (lmbox_mailbox_msg_lookup(mbox, _mail->uid, &meta) == 0) {
		mail_set_expunged(_mail);
		return -1;
	}
	mail_storage_set_critical(_mail->box->storage,
		"lmbox: reading body of %s UID %u: %s",
		_mail->box->vname, _mail->uid, errmsg);
	return -1;
}

static int
lmbox_mail_get_stream(struct mail *_mail, bool get_body ATTR_UNUSED,
		      struct message_size *hdr_size,
		      struct message_size *body_size,
		      struct istream **stream_r)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);
	struct mail_private *pmail = &mail->imail.mail;
	struct index_mail_data *data = &mail->imail.data;
	struct istream *input;
	int ret;

	if (data->stream == NULL) {
		if (_mail->saving) {
			mail_storage_set_error(_mail->box->storage,
				MAIL_ERROR_NOTPOSSIBLE,
				"lmbox: message body not committed yet");
			return -1;
		}
		if (!mail_stream_access_start(_mail))
			return -1;
		if (lmbox_mail_load(mail) < 0)
			return -1;
		/* the sizes let index_mail tell header from body sizes
		   without parsing */
		data->physical_size = mail->meta.phys_size;
		data->virtual_size = mail->meta.virt_size;
		T_BEGIN {
			ret = lmbox_mail_open_body(mail, &input);
		} T_END;
		if (ret < 0)
			return -1;
		if (pmail->v.istream_opened != NULL &&
		    pmail->v.istream_opened(_mail, &input) < 0) {
			i_stream_unref(&input);
			return -1;
		}
		data->stream = input;
		index_mail_set_read_buffer_size(_mail, input);
	}
	return index_mail_init_stream(&mail->imail, hdr_size, body_size,
				      stream_r);
}

/* index_mail_expunge() with the store's GUID as it is, not printed by
   get_special and parsed back (~1400 instructions a DELE at QUIT): from the
   mail's metadata or the folder's array when they are there, else from the
   snapshot's record alone (lmbox_reader_msg_guid: no copy, no pending
   check, and pop3's expunge search goes in UID order, so a cursor that
   stays on its leaf page answers most lookups without a descent); only a
   UID the snapshot lacks is looked up in a fresh one.  The folder's array
   is never built here. */
static void lmbox_mail_expunge(struct mail *_mail)
{
	struct lmbox_mail *mail = LMBOX_MAIL(_mail);
	struct lmbox_mailbox *mbox = LMBOX_MAILBOX(_mail->box);
	const struct lmbox_msg_meta *dense;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	uint8_t guid_buf[LMBOX_GUID_SIZE];
	const uint8_t *guid = NULL;
	int ret;

	if (_mail->saving) {
		index_mail_expunge(_mail);
		return;
	}
	if (mail->meta_loaded && mail->meta_uid == _mail->uid)
		guid = mail->meta.guid;
	else if ((dense = lmbox_meta_dense_find(mbox, _mail->uid)) != NULL)
		guid = dense->guid;
	else if ((reader = lmbox_mailbox_get_reader(mbox)) != NULL) {
		ret = lmbox_reader_msg_guid(reader, mbox->folder_id,
					    _mail->uid, guid_buf);
		if (ret == 0)
			guid = guid_buf;
		else if (ret == LMBOX_ERR_NOTFOUND) {
			/* saved after the snapshot began (or gone): look in
			   a fresh one */
			if (lmbox_mailbox_msg_lookup(mbox, _mail->uid,
						     &meta) > 0)
				guid = meta.guid;
		} else {
			/* logged; the expunge goes on by UID */
			lmbox_storage_set_error(_mail->box->storage, ret,
				t_strdup_printf("reading the GUID of %s UID %u",
						_mail->box->vname, _mail->uid));
		}
	}
	if (guid == NULL) {
		/* gone, or unreadable (logged): expunged by UID alone, as
		   index_mail_expunge() does when it finds no GUID */
		mail_index_expunge(_mail->transaction->itrans, _mail->seq);
	} else {
		mail_index_expunge_guid(_mail->transaction->itrans,
					_mail->seq, guid);
	}
}

struct mail_vfuncs lmbox_mail_vfuncs = {
	.close = lmbox_mail_close,
	.free = index_mail_free,
	.set_seq = index_mail_set_seq,
	.set_uid = index_mail_set_uid,
	.set_uid_cache_updates = index_mail_set_uid_cache_updates,
	.prefetch = lmbox_mail_prefetch,
	.precache = index_mail_precache,
	.add_temp_wanted_fields = index_mail_add_temp_wanted_fields,

	.get_flags = index_mail_get_flags,
	.get_keywords = index_mail_get_keywords,
	.get_keyword_indexes = index_mail_get_keyword_indexes,
	.get_modseq = index_mail_get_modseq,
	.get_pvt_modseq = index_mail_get_pvt_modseq,
	.get_parts = index_mail_get_parts,
	.get_date = index_mail_get_date,
	.get_received_date = lmbox_mail_get_received_date,
	.get_save_date = lmbox_mail_get_save_date,
	.get_virtual_size = lmbox_mail_get_virtual_size,
	.get_physical_size = lmbox_mail_get_physical_size,
	.get_first_header = index_mail_get_first_header,
	.get_headers = index_mail_get_headers,
	.get_header_stream = index_mail_get_header_stream,
	.get_stream = lmbox_mail_get_stream,
	.get_binary_stream = index_mail_get_binary_stream,
	.get_special = lmbox_mail_get_special,
	.get_backend_mail = index_mail_get_backend_mail,
	.update_flags = index_mail_update_flags,
	.update_keywords = index_mail_update_keywords,
	.update_modseq = index_mail_update_modseq,
	.update_pvt_modseq = index_mail_update_pvt_modseq,
	.update_pop3_uidl = NULL,
	.expunge = lmbox_mail_expunge,
	.set_cache_corrupted = index_mail_set_cache_corrupted,
	.istream_opened = index_mail_opened,
};
