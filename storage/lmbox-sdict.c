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
 * A third copy lives outside lmbox.mdb, in DIR/dict/XXXXXXXX.dict
 * (lmbox-format.h): it is written and made durable BEFORE the transaction
 * that names the dictionary in meta "dict", so no message is ever written
 * with a dictionary that lacks its file.  A dictionary whose file cannot
 * be written is not published (messages stay codec 3; the handle's
 * warning says why).  A store trained before the file existed gets it
 * from its LMDB record the first time a read-write handle looks up the
 * dictionary new messages use; if that fails too, that handle writes
 * codec 3.  Readers use the record and fall back to the file when both
 * copies fail their checks.
 *
 * Diagnostics: a codec 4 stream naming a dictionary that neither the store
 * nor its file has intact is LMBOX_ERR_CORRUPT.  Training failures do not
 * fail the commit they follow (the messages go on being stored as codec
 * 3); they leave a warning (lmbox_store_take_warning()).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
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

/* ---------------------------------------------------------- dict files */

static void lmbox_sdict_file_path(struct lmbox_store *store, uint32_t id,
				  char *buf, size_t size)
{
	snprintf(buf, size, "%s/" LMBOX_DICT_DIR "/%08lX.dict", store->dir,
		 (unsigned long)id);
}

int lmbox_sdict_file_read(struct lmbox_store *store, uint32_t id, unsigned char **buf_r,
			  const unsigned char **dict_r, size_t *len_r)
{
	char path[4096];
	unsigned char *buf;
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd, ret;

	*buf_r = NULL;
	lmbox_sdict_file_path(store, id, path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return lmbox_set_error(store, LMBOX_ERR_NOTFOUND, "%s is missing", path);
		return lmbox_set_errno(store, errno, "open(%s) failed", path);
	}
	if (fstat(fd, &st) < 0) {
		ret = lmbox_set_errno(store, errno, "fstat(%s) failed", path);
		close(fd);
		return ret;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < LMBOX_DICT_FILE_HDR ||
	    (uint64_t)st.st_size > lmbox_dict_file_size(LMBOX_SDICT_MAX)) {
		close(fd);
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s is damaged (size %lld)",
				       path, (long long)st.st_size);
	}
	if ((buf = malloc((size_t)st.st_size)) == NULL) {
		close(fd);
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	}
	while (got < (size_t)st.st_size &&
	       ((n = read(fd, buf + got, (size_t)st.st_size - got)) > 0 ||
		(n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	if (got < (size_t)st.st_size) {
		ret = lmbox_set_errno(store, errno != 0 ? errno : EIO, "read(%s) failed", path);
		free(buf);
		close(fd);
		return ret;
	}
	close(fd);
	if (lmbox_dict_file_decode(buf, got, id, dict_r, len_r) < 0) {
		free(buf);
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s is damaged", path);
	}
	*buf_r = buf;
	return 0;
}

static int lmbox_sdict_fsync_dir(struct lmbox_store *store, const char *dir)
{
	int dfd, ret;

	if (store->opts.fsync == LMBOX_FSYNC_NEVER)
		return 0;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return lmbox_set_errno(store, errno, "open(%s) failed", dir);
	if (fsync(dfd) < 0) {
		ret = lmbox_set_errno(store, errno, "fsync(%s) failed", dir);
		close(dfd);
		return ret;
	}
	close(dfd);
	return 0;
}

/* DIR/dict, created (and its creation made durable) if missing */
static int lmbox_sdict_dir(struct lmbox_store *store, char *buf, size_t size)
{
	snprintf(buf, size, "%s/" LMBOX_DICT_DIR, store->dir);
	if (mkdir(buf, lmbox_dir_mode(store->opts.file_mode)) == 0)
		return lmbox_sdict_fsync_dir(store, store->dir);
	if (errno != EEXIST)
		return lmbox_set_errno(store, errno, "mkdir(%s) failed", buf);
	return 0;
}

int lmbox_sdict_file_write(struct lmbox_store *store, uint32_t id,
			   const unsigned char *dict, size_t len)
{
	char dir[4096], path[4096], tmp[4200];
	unsigned char *buf;
	size_t size = lmbox_dict_file_size(len), done = 0;
	ssize_t n;
	int fd, ret;

	if ((ret = lmbox_sdict_dir(store, dir, sizeof(dir))) < 0)
		return ret;
	lmbox_sdict_file_path(store, id, path, sizeof(path));
	/* per process: two trainers racing never write one temp file */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if ((buf = malloc(size)) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	lmbox_dict_file_encode(dict, len, id, buf);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		       store->opts.file_mode)) < 0) {
		ret = lmbox_set_errno(store, errno, "creating %s failed", tmp);
		free(buf);
		return ret;
	}
	while (done < size && ((n = write(fd, buf + done, size - done)) > 0 ||
			       (n < 0 && errno == EINTR)))
		done += n > 0 ? (size_t)n : 0;
	free(buf);
	if (done < size) {
		ret = lmbox_set_errno(store, errno != 0 ? errno : ENOSPC, "write(%s) failed", tmp);
		goto fail;
	}
	if (store->opts.fsync != LMBOX_FSYNC_NEVER && fsync(fd) < 0) {
		ret = lmbox_set_errno(store, errno, "fsync(%s) failed", tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		ret = lmbox_set_errno(store, errno, "close(%s) failed", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		ret = lmbox_set_errno(store, errno, "rename(%s, %s) failed", tmp, path);
		goto fail;
	}
	return lmbox_sdict_fsync_dir(store, dir);
fail:
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	return ret;
}

static int lmbox_sdict_cache(struct lmbox_store *store, uint32_t id,
			     const unsigned char *bytes, size_t len,
			     const unsigned char **dict_r, size_t *len_r)
{
	struct lmbox_sdict *d;

	if ((d = malloc(sizeof(*d) + len)) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	d->id = id;
	d->len = len;
	memcpy(d->bytes, bytes, len);
	d->next = store->sdicts;
	store->sdicts = d;
	*dict_r = d->bytes;
	*len_r = d->len;
	return 0;
}

/* Both LMDB copies failed (why: in store->errmsg): the file then. */
static int lmbox_sdict_get_file(struct lmbox_store *store, uint32_t id,
				const unsigned char **dict_r, size_t *len_r)
{
	char why[LMBOX_ERRMSG_SIZE];
	const unsigned char *bytes;
	unsigned char *buf;
	size_t len;
	int ret;

	memcpy(why, store->errmsg, sizeof(why));
	if (lmbox_sdict_file_read(store, id, &buf, &bytes, &len) < 0) {
		char file_why[LMBOX_ERRMSG_SIZE];

		memcpy(file_why, store->errmsg, sizeof(file_why));
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT, "%s; its file: %s",
				       why, file_why);
	}
	ret = lmbox_sdict_cache(store, id, bytes, len, dict_r, len_r);
	free(buf);
	if (ret == 0) {
		lmbox_set_warning(store, "%s; read from its file instead: "
				  "run lmbox check --repair", why);
	}
	return ret;
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
		(void)lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store dictionary %08lX wanted, but the store has none",
			store->mdb_path, (unsigned long)id);
		return lmbox_sdict_get_file(store, id, dict_r, len_r);
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
		(void)lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store dictionary %08lX is missing", store->mdb_path,
			(unsigned long)id);
		return lmbox_sdict_get_file(store, id, dict_r, len_r);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return lmbox_set_mdb_error(store, rc, "%s: reading store dictionary %08lX",
					   store->mdb_path, (unsigned long)id);
	}
	if (lmbox_dict_rec_decode(v.mv_data, v.mv_size, id, &bytes, &len, &damaged) < 0) {
		mdb_txn_abort(txn);
		(void)lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s: store dictionary %08lX is damaged (both copies)",
			store->mdb_path, (unsigned long)id);
		return lmbox_sdict_get_file(store, id, dict_r, len_r);
	}
	ret = lmbox_sdict_cache(store, id, bytes, len, dict_r, len_r);
	mdb_txn_abort(txn);
	return ret;
}

/* A read-write handle makes sure the dictionary new messages use has its
 * file (a store trained before files existed gets it here) before any
 * message is written with it.  Checks that the file is there, not its
 * bytes (lmbox check does).  < 0: do not use the dictionary. */
static int lmbox_sdict_file_ensure(struct lmbox_store *store, uint32_t id)
{
	const unsigned char *dict;
	char path[4096];
	struct stat st;
	size_t len;
	int ret;

	if (store->sdict_file_ok == id || (store->opts.flags & LMBOX_OPEN_RDONLY) != 0)
		return 0;
	lmbox_sdict_file_path(store, id, path, sizeof(path));
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size > LMBOX_DICT_FILE_HDR &&
	    (uint64_t)st.st_size <= lmbox_dict_file_size(LMBOX_SDICT_MAX)) {
		store->sdict_file_ok = id;
		return 0;
	}
	if ((ret = lmbox_sdict_get(store, id, &dict, &len)) < 0 ||
	    (ret = lmbox_sdict_file_write(store, id, dict, len)) < 0) {
		lmbox_set_warning(store, "store dictionary %08lX has no file and none could "
				  "be written (%s): new messages are stored without it",
				  (unsigned long)id, lmbox_store_errmsg(store));
		return ret;
	}
	store->sdict_file_ok = id;
	return 0;
}

int lmbox_sdict_current(struct lmbox_store *store, uint32_t *id_r)
{
	MDB_txn *txn;
	uint32_t id;
	int ret;

	*id_r = 0;
	if (store->sdict_current != 0) {
		if (store->sdict_unusable == store->sdict_current)
			return 0;
		if (lmbox_sdict_file_ensure(store, store->sdict_current) < 0) {
			/* this handle tries once; its messages are codec 3 */
			store->sdict_unusable = store->sdict_current;
			return 0;
		}
		*id_r = store->sdict_current;
		return 0;
	}
	if (!store->env->has_dicts)
		return 0;
	if ((ret = lmbox_rtxn_begin(store, &txn)) < 0)
		return ret;
	ret = lmbox_meta_get_u32(store, txn, LMBOX_META_DICT, &id);
	mdb_txn_abort(txn);
	if (ret == LMBOX_ERR_NOTFOUND)
		return 0;
	if (ret < 0)
		return ret;
	store->sdict_current = id;
	return id == 0 ? 0 : lmbox_sdict_current(store, id_r);
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
	/* tests/unit/test-sdict: a crash after the file, before the commit */
	if (getenv("LMBOX_TEST_KILL_IN_SDICT") != NULL)
		(void)raise(SIGKILL);
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

/* What the store must hold before it trains: LMBOX_SDICT_TRAIN_STORED, or
   for tests LMBOX_TEST_SDICT_STORED (bytes). */
static uint64_t lmbox_sdict_train_stored(void)
{
	const char *env = getenv("LMBOX_TEST_SDICT_STORED");

	return env != NULL ? strtoull(env, NULL, 10) : LMBOX_SDICT_TRAIN_STORED;
}

/* 1 if the store should train now: no dictionary, enough messages and
   enough stored bytes that the dictionary's own pages do not matter.
   0 with store->sdict_small set: not yet, and what it lacks. */
static int lmbox_sdict_due(struct lmbox_store *store)
{
	MDB_txn *txn;
	MDB_stat st;
	uint64_t live, want;
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
		if (mdb_stat(txn, store->env->dbi_msgs, &st) != 0) {
			ret = LMBOX_ERR_IO;
		} else if (st.ms_entries < LMBOX_SDICT_TRAIN_MSGS) {
			/* the bytes are looked at once there are messages enough */
			store->sdict_small = true;
			store->sdict_need_msgs = LMBOX_SDICT_TRAIN_MSGS - st.ms_entries;
			store->sdict_need_bytes = 0;
			ret = 0;
		} else if ((live = lmbox_live_blob_bytes(store->env, txn)) <
			   (want = lmbox_sdict_train_stored())) {
			store->sdict_small = true;
			store->sdict_need_msgs = 0;
			store->sdict_need_bytes = want - live;
			ret = 0;
		} else {
			ret = 1;
		}
	}
	mdb_txn_abort(txn);
	return ret;
}

/* The file of the dictionary just trained.  A good file of the same id
 * with other bytes (an Adler-32 collision with an older dictionary) is
 * never replaced: no dictionary then (sc->len = 0). */
static int lmbox_sdict_train_file(struct lmbox_store *store,
				  struct lmbox_sdict_store_ctx *sc)
{
	const unsigned char *old;
	unsigned char *buf;
	size_t old_len;

	if (lmbox_sdict_file_read(store, sc->id, &buf, &old, &old_len) == 0) {
		if (old_len != sc->len || memcmp(old, sc->dict, sc->len) != 0)
			sc->len = 0;
		free(buf);
		return 0;
	}
	return lmbox_sdict_file_write(store, sc->id, sc->dict, sc->len);
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

	/* a dictionary directory that cannot take the file: do not read
	   the messages for nothing */
	{
		char dir[4096];

		if ((ret = lmbox_sdict_dir(store, dir, sizeof(dir))) < 0 ||
		    (access(dir, W_OK) < 0 &&
		     (ret = lmbox_set_errno(store, errno, "%s is not writable", dir)) < 0)) {
			lmbox_set_warning(store, "no store dictionary trained: %s",
					  lmbox_store_errmsg(store));
			return ret;
		}
	}
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
	/* its file first, durable before any message can use it */
	if (sc.len > 0 && (ret = lmbox_sdict_train_file(store, &sc)) < 0) {
		lmbox_set_warning(store, "store dictionary %08lX not used: writing its file "
				  "failed: %s", (unsigned long)sc.id, lmbox_store_errmsg(store));
		goto out;
	}
	/* with too little text: meta "dict" = 0, none, no more training */
	if ((ret = lmbox_write(store, lmbox_sdict_store_fn, &sc)) == 0) {
		store->sdict_current = sc.id;
		if (sc.len > 0)
			store->sdict_file_ok = sc.id;
	}
out:
	free(dict);
	free(buf);
	free(t);
	free(metas);
	return ret;
}

void lmbox_sdict_maybe_train(struct lmbox_store *store, unsigned int msgs,
			     uint64_t bytes)
{
	char saved[LMBOX_ERRMSG_SIZE];

	if (store->sdict_current != 0 || store->sdict_tried || !store->env->has_dicts ||
	    store->opts.compress_level <= 0 || lmbox_append_force_codec != 0)
		return;
	if (store->sdict_small) {
		/* found too small: the store cannot have grown enough through
		   this handle before it appended what was missing; other
		   processes' appends are seen every RECHECK_COMMITS commits */
		store->sdict_added_msgs += msgs;
		store->sdict_added_bytes += bytes;
		if (++store->sdict_commits < LMBOX_SDICT_RECHECK_COMMITS &&
		    (store->sdict_added_msgs < store->sdict_need_msgs ||
		     store->sdict_added_bytes < store->sdict_need_bytes))
			return;
		store->sdict_small = false;
		store->sdict_added_msgs = 0;
		store->sdict_added_bytes = 0;
		store->sdict_commits = 0;
	}
	memcpy(saved, store->errmsg, sizeof(saved));
	if (lmbox_sdict_due(store) == 1) {
		store->sdict_tried = true;
		(void)lmbox_sdict_train(store);
	}
	memcpy(store->errmsg, saved, sizeof(saved));
}
