/*
 * lmbox-append.c: saving a message body into a transaction.  Bytes are
 * checksummed, counted for the virtual size and deflated as they arrive,
 * with no lock held; the compressed bytes stay in memory up to
 * LMBOX_SPILL_THRESHOLD and then go to a spill file under the tmp dir
 * (O_TMPFILE, or unlinked at once), so a 1 GiB message costs no more memory
 * than a small one.  The commit copies them into a segment.  Before
 * deflate, lmbox-xform.c replaces base64 runs by the bytes they encode
 * (codec 3; a message without any is stored as codec 2), and once the store
 * has trained its own dictionary (lmbox-sdict.c) that is the deflate
 * dictionary (codec 4).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lmbox-private.h"

struct lmbox_append {
	struct lmbox_append *next;    /* in txn->appends */
	struct lmbox_txn *txn;        /* NULL once the txn is gone */
	struct lmbox_store *store;
	uint32_t folder_id;
	struct lmbox_pending *msg;

	z_stream zs;
	struct lmbox_xf_enc *xf;      /* base64 transform before deflate */
	bool z_init, last_cr, raw_keep, xf_forced;
	unsigned char *raw;           /* raw copy while small */
	size_t raw_len, raw_alloc;
	unsigned char *out;           /* compressed bytes before spilling */
	size_t out_len, out_alloc;
	int error;
	unsigned char stage[LMBOX_IO_CHUNK];  /* last: not cleared at begin */
};

void lmbox_append_opts_init(struct lmbox_append_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
}

static void lmbox_append_unlink(struct lmbox_append *append)
{
	struct lmbox_append **p;

	if (append->txn == NULL)
		return;
	for (p = &append->txn->appends; *p != NULL; p = &(*p)->next) {
		if (*p == append) {
			*p = append->next;
			break;
		}
	}
	append->txn = NULL;
}

void lmbox_append_orphan_all(struct lmbox_txn *txn)
{
	while (txn->appends != NULL) {
		struct lmbox_append *append = txn->appends;

		txn->appends = append->next;
		append->txn = NULL;
	}
}

static int lmbox_append_xf_emit(void *ctx, const void *data, size_t size);

/* ---------------------------------------------------- deflate stream start
 *
 * deflateInit() + deflateSetDictionary() for every message cost ~100 us of
 * an LMTP delivery of a 15 kB message (~160 us with its deflate): zlib
 * allocates ~260 KiB of tables that the allocator gets fresh from the
 * kernel each time, and hashes the 32 KiB dictionary into them.  Instead,
 * one stream per process is primed with the level and dictionary (an LMTP
 * process delivers to many stores, most of them with dictionary 1), and
 * each message's stream is a deflateCopy() of it, whose tables come from a
 * small cache of the blocks earlier streams freed.  The copy has the same
 * state, so the output is byte for byte what a fresh stream gives. */

#define LMBOX_ZBLOCKS 10
/* in front of each block: its size (16 bytes keep the block aligned) */
#define LMBOX_ZHDR 16

static struct {
	pthread_mutex_t lock;         /* the primed stream */
	pthread_mutex_t block_lock;   /* blocks[] */
	z_stream zs;                  /* the primed stream */
	bool init;
	int level;
	unsigned char *dict;
	size_t dict_len;
	void *blocks[LMBOX_ZBLOCKS];  /* freed blocks, header first */
	unsigned int nblocks;
} lmbox_zprime = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.block_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* zalloc/zfree of the streams: a freed block waits for the next stream
   that asks for its size (a stream allocates 5 blocks of 4 sizes). */
static voidpf lmbox_zalloc(voidpf opaque, uInt items, uInt size)
{
	size_t want = (size_t)items * size;
	unsigned char *base = NULL;
	unsigned int i;

	(void)opaque;
	pthread_mutex_lock(&lmbox_zprime.block_lock);
	for (i = 0; i < lmbox_zprime.nblocks; i++) {
		if (*(size_t *)lmbox_zprime.blocks[i] == want) {
			base = lmbox_zprime.blocks[i];
			lmbox_zprime.blocks[i] = lmbox_zprime.blocks[--lmbox_zprime.nblocks];
			break;
		}
	}
	pthread_mutex_unlock(&lmbox_zprime.block_lock);
	if (base == NULL) {
		if (want > SIZE_MAX - LMBOX_ZHDR ||
		    (base = malloc(LMBOX_ZHDR + want)) == NULL)
			return Z_NULL;
		*(size_t *)base = want;
	}
	return base + LMBOX_ZHDR;
}

static void lmbox_zfree(voidpf opaque, voidpf ptr)
{
	unsigned char *base = (unsigned char *)ptr - LMBOX_ZHDR;

	(void)opaque;
	pthread_mutex_lock(&lmbox_zprime.block_lock);
	if (lmbox_zprime.nblocks < LMBOX_ZBLOCKS) {
		lmbox_zprime.blocks[lmbox_zprime.nblocks++] = base;
		base = NULL;
	}
	pthread_mutex_unlock(&lmbox_zprime.block_lock);
	free(base);
}

static void lmbox_zprime_clear(void)
{
	if (lmbox_zprime.init)
		deflateEnd(&lmbox_zprime.zs);
	free(lmbox_zprime.dict);
	lmbox_zprime.dict = NULL;
	lmbox_zprime.dict_len = 0;
	lmbox_zprime.init = false;
}

__attribute__((destructor)) static void lmbox_zprime_free(void)
{
	lmbox_zprime_clear();
	while (lmbox_zprime.nblocks > 0)
		free(lmbox_zprime.blocks[--lmbox_zprime.nblocks]);
}

/* Prime the process's stream with level and dictionary (none when
   dict_len is 0).  Called with the lock held.  0 ok, -1 out of memory. */
static int lmbox_zprime_fill(int level, const unsigned char *dict, size_t dict_len)
{
	unsigned char *copy = NULL;

	lmbox_zprime_clear();
	if (dict_len > 0 && (copy = malloc(dict_len)) == NULL)
		return -1;
	/* deflateCopy() allocates the copies with the source's zalloc */
	memset(&lmbox_zprime.zs, 0, sizeof(lmbox_zprime.zs));
	lmbox_zprime.zs.zalloc = lmbox_zalloc;
	lmbox_zprime.zs.zfree = lmbox_zfree;
	if (deflateInit(&lmbox_zprime.zs, level) != Z_OK) {
		free(copy);
		return -1;
	}
	if (dict_len > 0 &&
	    deflateSetDictionary(&lmbox_zprime.zs, dict, (uInt)dict_len) != Z_OK) {
		deflateEnd(&lmbox_zprime.zs);
		free(copy);
		return -1;
	}
	if (dict_len > 0)
		memcpy(copy, dict, dict_len);
	lmbox_zprime.dict = copy;
	lmbox_zprime.dict_len = dict_len;
	lmbox_zprime.level = level;
	lmbox_zprime.init = true;
	return 0;
}

int lmbox_deflate_start(z_stream *zs, int level,
			const unsigned char *dict, size_t dict_len)
{
	int ret = 0;

	pthread_mutex_lock(&lmbox_zprime.lock);
	if (!lmbox_zprime.init || lmbox_zprime.level != level ||
	    lmbox_zprime.dict_len != dict_len ||
	    (dict_len > 0 && memcmp(lmbox_zprime.dict, dict, dict_len) != 0))
		ret = lmbox_zprime_fill(level, dict, dict_len);
	if (ret == 0) {
		memset(zs, 0, sizeof(*zs));
		if (deflateCopy(zs, &lmbox_zprime.zs) != Z_OK)
			ret = -1;
	}
	pthread_mutex_unlock(&lmbox_zprime.lock);
	return ret;
}

int lmbox_append_begin(
struct lmbox_txn *txn, uint32_t folder_id,
		       const struct lmbox_append_opts *opts,
		       struct lmbox_append **append_r)
{
	struct lmbox_store *store = txn->store;
	struct lmbox_append_opts defaults;
	struct lmbox_append *append;
	struct lmbox_pending *msg;
	int64_t now = lmbox_now();
	int ret;

	*append_r = NULL;
	if ((ret = lmbox_store_check_usable(store, true)) < 0)
		return ret;
	if (opts == NULL) {
		lmbox_append_opts_init(&defaults);
		opts = &defaults;
	}
	if (folder_id == 0)
		return lmbox_set_error(store, LMBOX_ERR_INVALID, "%s: append to folder id 0", store->dir);
	if ((opts->flags & ~LMBOX_FLAGS_MASK) != 0) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID, "%s: bad flags 0x%x",
				       store->dir, opts->flags);
	}
	if (opts->uidl != NULL && !lmbox_uidl_valid(opts->uidl, strlen(opts->uidl))) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: UIDL \"%.80s\" is not 1-70 characters 0x21-0x7E", store->dir, opts->uidl);
	}
	/* not calloc: the 64 KiB stage buffer needs no clearing */
	append = malloc(sizeof(*append));
	if (append != NULL)
		memset(append, 0, offsetof(struct lmbox_append, stage));
	msg = calloc(1, sizeof(*msg));
	if (append == NULL || msg == NULL) {
		free(append);
		free(msg);
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	}
	msg->spill_fd = -1;
	append->msg = msg;
	append->store = store;
	append->folder_id = folder_id;
	msg->received_date = opts->received_date != 0 ? opts->received_date : now;
	msg->save_date = opts->save_date != 0 ? opts->save_date : now;
	if (opts->guid != NULL)
		memcpy(msg->guid, opts->guid, LMBOX_GUID_SIZE);
	else
		lmbox_random_bytes(msg->guid, LMBOX_GUID_SIZE);
	msg->pop3_order = opts->pop3_order;
	msg->want_uid = opts->uid;
	msg->flags = opts->flags;
	msg->checksum = (uint32_t)crc32(0, NULL, 0);
	if ((opts->uidl != NULL && (msg->uidl = strdup(opts->uidl)) == NULL)) {
		ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
		goto fail;
	}
	if ((ret = lmbox_keywords_pack(store, opts->keywords, &msg->keywords,
				       &msg->kw_count)) < 0)
		goto fail;
	if (store->opts.compress_level > 0) {
		const unsigned char *dict = lmbox_dict1;
		size_t dict_len = lmbox_dict1_size;
		uint32_t sdict_id = 0;

		append->raw_keep = true;
		msg->codec = lmbox_append_force_codec != 0 ?
			(uint8_t)lmbox_append_force_codec : LMBOX_CODEC_DEFLATE_B64;
		/* the store's own dictionary once it has one; if it cannot be
		   read, dictionary 1 does (the message is saved either way) */
		if (lmbox_append_force_codec == 0 &&
		    lmbox_sdict_current(store, &sdict_id) == 0 && sdict_id != 0 &&
		    lmbox_sdict_get(store, sdict_id, &dict, &dict_len) == 0) {
			msg->codec = LMBOX_CODEC_DEFLATE_B64_SDICT;
		} else {
			dict = lmbox_dict1;
			dict_len = lmbox_dict1_size;
		}
		/* codec 4 has no plain form: a message without base64 is one
		   literal record */
		append->xf_forced = msg->codec != LMBOX_CODEC_DEFLATE_B64 ||
			lmbox_append_force_codec == LMBOX_CODEC_DEFLATE_B64;
		if ((msg->codec == LMBOX_CODEC_DEFLATE_B64 ||
		     msg->codec == LMBOX_CODEC_DEFLATE_B64_SDICT) &&
		    (append->xf = lmbox_xf_enc_new(lmbox_append_xf_emit, append)) == NULL) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
			goto fail;
		}
		if (lmbox_deflate_start(&append->zs, store->opts.compress_level, dict,
					msg->codec == LMBOX_CODEC_DEFLATE ? 0 : dict_len) < 0) {
			ret = lmbox_set_error(store, LMBOX_ERR_NOMEM,
					      "setting up deflate failed (out of memory)");
			goto fail;
		}
		append->z_init = true;
	} else {
		msg->codec = LMBOX_CODEC_RAW;
	}
	append->txn = txn;
	append->next = txn->appends;
	txn->appends = append;
	*append_r = append;
	return 0;
fail:
	if (append->z_init)
		deflateEnd(&append->zs);
	lmbox_xf_enc_free(&append->xf);
	lmbox_pending_free(msg);
	free(append);
	return ret;
}

uint64_t lmbox_append_virt_size(const struct lmbox_append *append)
{
	return append->msg->virt_size;
}

/* Test hook (lmbox-format.h): 0 = the default codec. */
int lmbox_append_force_codec = 0;

static int lmbox_spill_open(struct lmbox_append *append)
{
	struct lmbox_store *store = append->store;
	const char *dir = store->tmp_dir;
	char path[4096];
	int fd;

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* no O_TMPFILE here: a named file, gone at once */
		snprintf(path, sizeof(path), "%s/append.XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			(void)unlink(path);
	}
	if (fd < 0)
		return lmbox_set_errno(store, errno, "creating a spill file in %s failed", dir);
	append->msg->spill_fd = fd;
	return 0;
}

/* Compressed (or raw, at level 0) bytes out of the append. */
static int lmbox_append_emit(struct lmbox_append *append, const void *data, size_t size)
{
	struct lmbox_pending *msg = append->msg;
	int ret;

	if (size == 0)
		return 0;
	if (msg->spill_fd < 0 && append->out_len + size <= LMBOX_SPILL_THRESHOLD &&
	    (append->txn == NULL ||
	     append->txn->mem_bytes + append->out_len + size <= LMBOX_TXN_MEM_MAX)) {
		if (append->out_len + size > append->out_alloc) {
			size_t new_alloc = append->out_alloc == 0 ? 4096 : append->out_alloc;
			unsigned char *p;

			while (new_alloc < append->out_len + size)
				new_alloc *= 2;
			if ((p = realloc(append->out, new_alloc)) == NULL)
				return lmbox_set_error(append->store, LMBOX_ERR_NOMEM, "out of memory");
			append->out = p;
			append->out_alloc = new_alloc;
		}
		memcpy(append->out + append->out_len, data, size);
		append->out_len += size;
		msg->stored_size += size;
		return 0;
	}
	if (msg->spill_fd < 0) {
		if ((ret = lmbox_spill_open(append)) < 0)
			return ret;
		ret = lmbox_pwrite_full(append->store, msg->spill_fd, append->out,
					append->out_len, 0, "spill file");
		if (ret < 0)
			return ret;
		free(append->out);
		append->out = NULL;
		append->out_len = append->out_alloc = 0;
	}
	ret = lmbox_pwrite_full(append->store, msg->spill_fd, data, size,
				msg->stored_size, "spill file");
	if (ret < 0)
		return ret;
	msg->stored_size += size;
	return 0;
}

static int lmbox_append_deflate(struct lmbox_append *append, const void *data,
				size_t size, int flush)
{
	z_stream *zs = &append->zs;
	int zret, ret;

	zs->next_in = (Bytef *)data;
	zs->avail_in = (uInt)size;
	do {
		zs->next_out = append->stage;
		zs->avail_out = sizeof(append->stage);
		zret = deflate(zs, flush);
		if (zret == Z_STREAM_ERROR)
			return lmbox_set_error(append->store, LMBOX_ERR_IO, "deflate failed");
		ret = lmbox_append_emit(append, append->stage,
					sizeof(append->stage) - zs->avail_out);
		if (ret < 0)
			return ret;
	} while (zs->avail_out == 0 || zs->avail_in > 0 ||
		 (flush == Z_FINISH && zret != Z_STREAM_END));
	return 0;
}

/* The transformed stream (lmbox-xform.c) into deflate. */
static int lmbox_append_xf_emit(void *ctx, const void *data, size_t size)
{
	return lmbox_append_deflate(ctx, data, size, Z_NO_FLUSH);
}

/* Count LFs not preceded by CR, also across write() boundaries. */
static uint64_t lmbox_count_bare_lf(const unsigned char *p, size_t size, bool prev_cr)
{
	const unsigned char *end = p + size, *start = p, *lf;
	uint64_t count = 0;

	while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		bool cr = lf == start ? prev_cr : lf[-1] == '\r';
		if (!cr)
			count++;
		p = lf + 1;
	}
	return count;
}

int lmbox_append_write(struct lmbox_append *append, const void *data, size_t size)
{
	struct lmbox_pending *msg = append->msg;
	const unsigned char *p = data;
	int ret;

	if (append->error < 0)
		return append->error;
	if (append->txn == NULL) {
		return lmbox_set_error(append->store, LMBOX_ERR_INVALID,
				       "append used after its transaction ended");
	}
	if ((ret = lmbox_store_check_usable(append->store, true)) < 0)
		return ret;
	if (size == 0)
		return 0;
	if (msg->phys_size + size > LMBOX_MAX_MESSAGE_SIZE) {
		append->error = lmbox_set_error(append->store, LMBOX_ERR_TOOBIG,
			"%s: message for folder %u exceeds the %llu byte limit", append->store->dir,
			append->folder_id, (unsigned long long)LMBOX_MAX_MESSAGE_SIZE);
		return append->error;
	}
	msg->virt_size += size + lmbox_count_bare_lf(p, size, append->last_cr);
	append->last_cr = p[size - 1] == '\r';
	msg->phys_size += size;
	for (size_t off = 0; off < size; ) {
		size_t n = size - off > (1U << 30) ? (1U << 30) : size - off;
		msg->checksum = (uint32_t)crc32(msg->checksum, p + off, (uInt)n);
		off += n;
	}
	if (append->raw_keep) {
		if (append->raw_len + size > LMBOX_RAW_KEEP_MAX) {
			append->raw_keep = false;
			free(append->raw);
			append->raw = NULL;
			append->raw_len = append->raw_alloc = 0;
		} else {
			if (append->raw_len + size > append->raw_alloc) {
				size_t new_alloc = append->raw_alloc == 0 ? 4096 : append->raw_alloc;
				unsigned char *np;

				while (new_alloc < append->raw_len + size)
					new_alloc *= 2;
				if ((np = realloc(append->raw, new_alloc)) == NULL) {
					append->error = lmbox_set_error(append->store,
						LMBOX_ERR_NOMEM, "out of memory");
					return append->error;
				}
				append->raw = np;
				append->raw_alloc = new_alloc;
			}
			memcpy(append->raw + append->raw_len, p, size);
			append->raw_len += size;
		}
	}
	if (append->xf != NULL) {
		ret = lmbox_xf_enc_write(append->xf, p, size);
	} else if (append->z_init) {
		for (size_t off = 0; off < size && ret == 0; ) {
			size_t n = size - off > (1U << 30) ? (1U << 30) : size - off;
			ret = lmbox_append_deflate(append, p + off, n, Z_NO_FLUSH);
			off += n;
		}
	} else {
		ret = lmbox_append_emit(append, p, size);
	}
	if (ret < 0)
		append->error = ret;
	return ret;
}

static void lmbox_append_free(struct lmbox_append *append)
{
	lmbox_append_unlink(append);
	if (append->z_init)
		deflateEnd(&append->zs);
	lmbox_xf_enc_free(&append->xf);
	free(append->raw);
	free(append->out);
	if (append->msg != NULL)
		lmbox_pending_free(append->msg);
	free(append);
}

int lmbox_append_finish(struct lmbox_append **_append)
{
	struct lmbox_append *append = *_append;
	struct lmbox_pending *msg = append->msg;
	struct lmbox_op op;
	int ret;

	*_append = NULL;
	if (append->txn == NULL) {
		ret = lmbox_set_error(append->store, LMBOX_ERR_INVALID,
				      "append finished after its transaction ended");
		goto out;
	}
	if ((ret = append->error) < 0)
		goto out;
	if (append->xf != NULL) {
		bool plain;

		if ((ret = lmbox_xf_enc_finish(append->xf, !append->xf_forced, &plain)) < 0)
			goto out;
		if (plain)
			msg->codec = LMBOX_CODEC_DEFLATE_DICT1;
	}
	if (append->z_init &&
	    (ret = lmbox_append_deflate(append, NULL, 0, Z_FINISH)) < 0)
		goto out;
	if (append->raw_keep && msg->stored_size >= msg->phys_size) {
		/* incompressible (or tiny): store it raw */
		if (msg->spill_fd >= 0) {
			close(msg->spill_fd);
			msg->spill_fd = -1;
		}
		free(append->out);
		append->out = append->raw;
		append->raw = NULL;
		msg->stored_size = append->raw_len;
		msg->codec = LMBOX_CODEC_RAW;
	}
	msg->data = append->out;
	append->out = NULL;
	memset(&op, 0, sizeof(op));
	op.type = LMBOX_OP_APPEND;
	op.folder_id = append->folder_id;
	op.msg = msg;
	op.seq = append->txn->seq_count;
	if ((ret = lmbox_txn_add_op(append->txn, &op)) < 0)
		goto out; /* msg, with its data, is freed with the append */
	append->msg = NULL;
	ret = (int)op.seq;
	append->txn->seq_count++;
	if (msg->spill_fd < 0)
		append->txn->mem_bytes += msg->stored_size;
out:
	lmbox_append_free(append);
	return ret;
}

void lmbox_append_abort(struct lmbox_append **_append)
{
	struct lmbox_append *append = *_append;

	if (append == NULL)
		return;
	*_append = NULL;
	lmbox_append_free(append);
}
