/*
 * lmbox-sdict.c: the store's own deflate dictionary (codec 4).  Per-message
 * deflate relearns a user's words, names and header shapes in every
 * message; a dictionary made of the user's own earlier text gives each
 * message a window that already holds them (docs/design.md "Body codecs").
 *
 * Training: after the first commit that leaves the store with at least
 * LMBOX_SDICT_TRAIN_MSGS messages and LMBOX_SDICT_TRAIN_STORED bytes in its
 * segments (below that the dictionary's own pages, ~70 KiB, weigh more than
 * it saves, and a small store's metadata already costs more than its
 * bodies), the bodies of the first ones (in key
 * order, at most LMBOX_SDICT_TRAIN_BYTES read) go through the base64
 * transform and the last LMBOX_SDICT_MAX bytes of their literal text
 * become the dictionary.  It is stored, in one write transaction, in the
 * "dicts" database under its Adler-32 (which the zlib header of every
 * message using it names as DICTID) and named in meta "dict" -- unless
 * another process got there first, whose dictionary then stays.  A stored
 * dictionary never changes and is never deleted.
 *
 * Diagnostics: a codec 4 stream naming a dictionary the store lacks, or
 * whose record fails its checks, is LMBOX_ERR_CORRUPT.  Training failures
 * are not reported (the commit they follow succeeded; the messages go on
 * being stored as codec 3).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lmbox-private.h"

/* less text than this in the first messages: no dictionary */
#define LMBOX_SDICT_MIN 1024

struct lmbox_sdict {
	struct lmbox_sdict *next;
	uint32_t id;
	size_t len;
	unsigned char bytes[];
};

void lmbox_sdict_free_all(struct lmbox_store *store)
{
	while (store->sdicts != NULL) {
		struct lmbox_sdict *d = store->sdicts;

		store->sdicts = d->next;
		free(d);
	}
}

int lmbox_sdict_get(struct lmbox_store *store, uint32_t id,
		    const unsigned char **dict_r, size_t *len_r)
{
	struct lmbox_sdict *d;
	const unsigned char *bytes;
	unsigned char key[4];
	MDB_txn *txn;
	MDB_val k = { sizeof(key), key }, v;
	size_t len;
	bool damaged;
	int rc, ret;

	for (d = store->sdicts; d != NULL; d = d->next) {
		if (d->id == id) {
			*dict_r = d->bytes;
			*len_r = d->len;
			return 0;
		}
	}
	if (!store->env->has_dicts) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store dictionary %08lX wanted, but the store has none",
			store->mdb_path, (unsigned long)id);
	}
	key[0] = (unsigned char)(id >> 24);
	key[1] = (unsigned char)(id >> 16);
	key[2] = (unsigned char)(id >> 8);
	key[3] = (unsigned char)id;
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	rc = mdb_get(txn, store->env->dbi_dicts, &k, &v);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store dictionary %08lX is missing", store->mdb_path,
			(unsigned long)id);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return lmbox_set_mdb_error(store, rc, "%s: reading store dictionary %08lX",
					   store->mdb_path, (unsigned long)id);
	}
	if (lmbox_dict_rec_decode(v.mv_data, v.mv_size, id, &bytes, &len, &damaged) < 0) {
		mdb_txn_abort(txn);
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store dictionary %08lX is damaged (both copies)",
			store->mdb_path, (unsigned long)id);
	}
	if ((d = malloc(sizeof(*d) + len)) == NULL) {
		mdb_txn_abort(txn);
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	}
	d->id = id;
	d->len = len;
	memcpy(d->bytes, bytes, len);
	mdb_txn_abort(txn);
	d->next = store->sdicts;
	store->sdicts = d;
	*dict_r = d->bytes;
	*len_r = d->len;
	return 0;
}

int lmbox_sdict_current(struct lmbox_store *store, uint32_t *id_r)
{
	MDB_txn *txn;
	uint32_t id;
	int ret;

	*id_r = store->sdict_current;
	if (store->sdict_current != 0 || !store->env->has_dicts)
		return 0;
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	ret = lmbox_meta_get_u32(store, txn, LMBOX_META_DICT, &id);
	mdb_txn_abort(txn);
	if (ret == LMBOX_ERR_NOTFOUND)
		return 0;
	if (ret < 0)
		return ret;
	store->sdict_current = *id_r = id;
	return 0;
}

/* ------------------------------------------------------------ training */

struct lmbox_sdict_train {
	unsigned char text[LMBOX_SDICT_MAX];  /* a ring: the last bytes */
	size_t pos, len;
	bool want_payload;                    /* headers and payloads alternate */
	bool in_literal;                      /* the record being emitted */
};

/* The transformed stream of a sample message: keep its literal bytes. */
static int lmbox_sdict_sample(void *ctx, const void *data, size_t size)
{
	struct lmbox_sdict_train *t = ctx;
	const unsigned char *p = data;

	if (!t->want_payload) {
		/* lmbox_xf_record() emits the header alone, then the payload */
		t->in_literal = size == LMBOX_XF_HDR && p[0] == LMBOX_XF_LITERAL;
		t->want_payload = true;
		return 0;
	}
	t->want_payload = false;
	if (!t->in_literal)
		return 0;
	if (size > sizeof(t->text)) {
		p += size - sizeof(t->text);
		size = sizeof(t->text);
	}
	while (size > 0) {
		size_t k = sizeof(t->text) - t->pos < size ? sizeof(t->text) - t->pos : size;

		memcpy(t->text + t->pos, p, k);
		t->pos = (t->pos + k) % sizeof(t->text);
		p += k;
		size -= k;
		t->len = t->len + k > sizeof(t->text) ? sizeof(t->text) : t->len + k;
	}
	return 0;
}

/* Feeds the body of meta through the transform into t. */
static int lmbox_sdict_feed(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
			    struct lmbox_sdict_train *t, unsigned char *buf, size_t buf_size,
			    uint64_t *budget)
{
	struct lmbox_xf_enc *enc;
	struct lmbox_body *body;
	ssize_t n;
	bool plain;
	int ret;

	if (meta->phys_size > *budget)
		return 0;
	*budget -= meta->phys_size;
	if ((enc = lmbox_xf_enc_new(lmbox_sdict_sample, t)) == NULL)
		return LMBOX_ERR_NOMEM;
	if ((ret = lmbox_body_open(store, meta, &body)) < 0) {
		lmbox_xf_enc_free(&enc);
		return ret;
	}
	t->want_payload = false;
	while ((n = lmbox_body_read(body, buf, buf_size)) > 0)
		(void)lmbox_xf_enc_write(enc, buf, (size_t)n);
	lmbox_body_close(&body);
	/* a message that is not all there gives nothing */
	if (n == 0)
		(void)lmbox_xf_enc_finish(enc, false, &plain);
	lmbox_xf_enc_free(&enc);
	return n < 0 ? (int)n : 0;
}

struct lmbox_sdict_store_ctx {
	const unsigned char *dict;
	size_t len;
	uint32_t id;
	bool stored;
};

static int lmbox_sdict_store_fn(struct lmbox_wctx *ctx, void *context)
{
	struct lmbox_sdict_store_ctx *sc = context;
	struct lmbox_store *store = ctx->store;
	unsigned char key[4];
	MDB_val k = { sizeof(key), key }, v;
	uint32_t cur;
	int rc, ret;

	sc->stored = false;
	ret = lmbox_meta_get_u32(store, ctx->txn, LMBOX_META_DICT, &cur);
	if (ret == 0) {
		/* another process trained one first: that one stays */
		sc->id = cur;
		return 0;
	}
	if (ret != LMBOX_ERR_NOTFOUND)
		return ret;
	if (sc->len == 0)
		return lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_DICT, 0);
	key[0] = (unsigned char)(sc->id >> 24);
	key[1] = (unsigned char)(sc->id >> 16);
	key[2] = (unsigned char)(sc->id >> 8);
	key[3] = (unsigned char)sc->id;
	rc = mdb_get(ctx->txn, store->env->dbi_dicts, &k, &v);
	if (rc == 0) {
		/* a dictionary of that id exists (trained before a repair
		   forgot it): the same bytes are used again; other bytes of
		   the same Adler-32, or a damaged record, are never
		   overwritten (messages need them): no dictionary then */
		const unsigned char *old;
		size_t old_len;
		bool damaged;

		if (lmbox_dict_rec_decode(v.mv_data, v.mv_size, sc->id, &old, &old_len,
					  &damaged) < 0 ||
		    old_len != sc->len || memcmp(old, sc->dict, sc->len) != 0)
			sc->id = 0;
		return lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_DICT, sc->id);
	}
	if (rc != MDB_NOTFOUND)
		return lmbox_set_mdb_error(store, rc, "%s: reading store dictionaries",
					   store->mdb_path);
	v.mv_size = lmbox_dict_rec_size(sc->len);
	rc = mdb_put(ctx->txn, store->env->dbi_dicts, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE);
	if (rc != 0)
		return lmbox_set_mdb_error(store, rc, "%s: storing the store dictionary",
					   store->mdb_path);
	lmbox_dict_rec_encode(sc->dict, sc->len, v.mv_data);
	if ((ret = lmbox_meta_put_u32(store, ctx->txn, LMBOX_META_DICT, sc->id)) < 0)
		return ret;
	sc->stored = true;
	return 0;
}

/* Bytes the store's segments hold for live messages (a few records). */
static uint64_t lmbox_sdict_stored_bytes(struct lmbox_store *store, MDB_txn *txn)
{
	struct lmbox_seg_rec rec;
	uint64_t total = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (mdb_cursor_open(txn, store->env->dbi_segs, &cur) != 0)
		return 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (lmbox_seg_rec_decode(v.mv_data, v.mv_size, &rec) == 0)
			total += rec.live_bytes;
	}
	mdb_cursor_close(cur);
	return total;
}

/* What the store must hold before it trains: LMBOX_SDICT_TRAIN_STORED, or
   for tests LMBOX_TEST_SDICT_STORED (bytes). */
static uint64_t lmbox_sdict_train_stored(void)
{
	const char *env = getenv("LMBOX_TEST_SDICT_STORED");

	return env != NULL ? strtoull(env, NULL, 10) : LMBOX_SDICT_TRAIN_STORED;
}

/* 1 if the store should train now: no dictionary, enough messages and
   enough stored bytes that the dictionary's own pages do not matter. */
static int lmbox_sdict_due(struct lmbox_store *store)
{
	MDB_txn *txn;
	MDB_stat st;
	uint32_t id;
	int ret;

	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	ret = lmbox_meta_get_u32(store, txn, LMBOX_META_DICT, &id);
	if (ret == 0) {
		/* trained (or decided against: 0) */
		store->sdict_current = id;
		store->sdict_tried = id == 0;
		ret = 0;
	} else if (ret == LMBOX_ERR_NOTFOUND) {
		ret = mdb_stat(txn, store->env->dbi_msgs, &st) != 0 ? LMBOX_ERR_IO :
			st.ms_entries >= LMBOX_SDICT_TRAIN_MSGS &&
			lmbox_sdict_stored_bytes(store, txn) >= lmbox_sdict_train_stored();
	}
	mdb_txn_abort(txn);
	return ret;
}

static int lmbox_sdict_train(struct lmbox_store *store)
{
	struct lmbox_sdict_train *t;
	struct lmbox_sdict_store_ctx sc;
	struct lmbox_msg_meta *metas = NULL;
	unsigned char *buf = NULL, *dict = NULL;
	unsigned int count = 0;
	uint64_t budget = LMBOX_SDICT_TRAIN_BYTES;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret;

	/* the first messages' records, copied out of the read snapshot */
	if ((metas = calloc(LMBOX_SDICT_TRAIN_MSGS, sizeof(*metas))) == NULL)
		return LMBOX_ERR_NOMEM;
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0) {
		free(metas);
		return ret;
	}
	if ((rc = mdb_cursor_open(txn, store->env->dbi_msgs, &cur)) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		     rc == 0 && count < LMBOX_SDICT_TRAIN_MSGS;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct lmbox_msg_meta *m = &metas[count];

			if (lmbox_msg_decode(v.mv_data, v.mv_size, m) < 0 ||
			    lmbox_msg_key_decode(k.mv_data, k.mv_size, &m->folder_id,
						 &m->uid) < 0)
				continue;
			/* pointers into the map must not outlive the snapshot */
			m->uidl = NULL;
			m->keywords = NULL;
			m->kw_count = 0;
			count++;
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);

	t = malloc(sizeof(*t));
	buf = malloc(LMBOX_IO_CHUNK);
	if (t == NULL || buf == NULL) {
		ret = LMBOX_ERR_NOMEM;
		goto out;
	}
	memset(t, 0, sizeof(*t));
	for (unsigned int i = 0; i < count; i++) {
		/* an unreadable message (expunged meanwhile, damaged) is left out */
		(void)lmbox_sdict_feed(store, &metas[i], t, buf, LMBOX_IO_CHUNK, &budget);
	}
	memset(&sc, 0, sizeof(sc));
	if (t->len >= LMBOX_SDICT_MIN) {
		if ((dict = malloc(t->len)) == NULL) {
			ret = LMBOX_ERR_NOMEM;
			goto out;
		}
		/* the ring's bytes in order: the oldest first, the latest last */
		for (size_t i = 0; i < t->len; i++)
			dict[i] = t->text[(t->pos + sizeof(t->text) - t->len + i) %
					  sizeof(t->text)];
		sc.dict = dict;
		sc.len = t->len;
		sc.id = (uint32_t)adler32(adler32(0, NULL, 0), dict, (uInt)t->len);
	}
	/* with too little text: meta "dict" = 0, none, no more training */
	if ((ret = lmbox_write(store, lmbox_sdict_store_fn, &sc)) == 0)
		store->sdict_current = sc.id;
out:
	free(dict);
	free(buf);
	free(t);
	free(metas);
	return ret;
}

void lmbox_sdict_maybe_train(struct lmbox_store *store)
{
	char saved[LMBOX_ERRMSG_SIZE];

	if (store->sdict_current != 0 || store->sdict_tried || !store->env->has_dicts ||
	    store->opts.compress_level <= 0 || lmbox_append_force_codec != 0)
		return;
	memcpy(saved, store->errmsg, sizeof(saved));
	if (lmbox_sdict_due(store) == 1) {
		store->sdict_tried = true;
		(void)lmbox_sdict_train(store);
	}
	memcpy(store->errmsg, saved, sizeof(saved));
}
