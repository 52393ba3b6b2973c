/*
 * lmbox-body.c: reading message bodies.  A body stream reads the blob's
 * stored bytes from its segment in chunks and inflates them incrementally,
 * so a 50 MB message never needs 50 MB of memory.  The CRC-32 of the
 * physical bytes is checked when the end is reached.  A body that cannot be
 * read because its message was expunged meanwhile (hole punched, segment
 * unlinked) is reported as LMBOX_ERR_NOTFOUND, not as corruption.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lmbox-private.h"

static uint64_t lmbox_body_opens;

struct lmbox_body {
	struct lmbox_store *store;
	int fd;
	uint32_t folder_id, uid, seg_id;
	uint64_t seg_offset, data_offset;
	uint64_t phys_size, stored_size;
	uint32_t checksum, crc;
	uint8_t codec;
	uint64_t in_pos, out_pos;
	z_stream zs;
	bool z_init, z_end, z_dict, finished;
	int error;
	char what[256];               /* names the blob in error messages */
	unsigned char inbuf[LMBOX_IO_CHUNK];  /* last: not cleared at open */
};

uint64_t lmbox_body_open_count(void)
{
	return __atomic_load_n(&lmbox_body_opens, __ATOMIC_RELAXED);
}

/* A read failed: if the message is gone from the latest snapshot the cause
 * is a concurrent expunge, not corruption; if it moved (lmbox_compact),
 * returns 1 with body pointed at the new place when retry is allowed. */
static int lmbox_body_failed(struct lmbox_body *body, int ret, bool retry)
{
	struct lmbox_store *store = body->store;
	struct lmbox_msg_meta meta;
	char saved[LMBOX_ERRMSG_SIZE];
	MDB_txn *txn;
	int ret2;

	if (ret != LMBOX_ERR_CORRUPT && ret != LMBOX_ERR_CHECKSUM &&
	    ret != LMBOX_ERR_NOTFOUND)
		return ret;
	if (body->folder_id == 0 || body->uid == 0)
		return ret;
	memcpy(saved, store->errmsg, sizeof(saved));
	if (lmbox_rtxn_begin(store, &txn) < 0) {
		memcpy(store->errmsg, saved, sizeof(saved));
		return ret;
	}
	ret2 = lmbox_msg_load(store, txn, body->folder_id, body->uid, &meta);
	if (ret2 == LMBOX_ERR_NOTFOUND) {
		ret = lmbox_set_error(store, LMBOX_ERR_NOTFOUND,
			"%s: message uid %u in folder %u was expunged while being read",
			store->dir, body->uid, body->folder_id);
	} else if (ret2 == 0 && (meta.seg_id != body->seg_id ||
				 meta.seg_offset != body->seg_offset) &&
		   meta.checksum == body->checksum && meta.phys_size == body->phys_size) {
		if (retry) {
			body->seg_id = meta.seg_id;
			body->seg_offset = meta.seg_offset;
			body->data_offset = meta.seg_offset + LMBOX_BLOB_HDR_SIZE;
			body->stored_size = meta.stored_size;
			body->codec = meta.codec;
			ret = 1;
		} else {
			ret = lmbox_set_error(store, LMBOX_ERR_BUSY,
				"%s: message uid %u in folder %u was moved by compaction "
				"while being read: retry", store->dir, body->uid, body->folder_id);
		}
	} else if (ret2 == 0 && (meta.seg_id != body->seg_id ||
				 meta.seg_offset != body->seg_offset)) {
		/* the UID now names other bytes (should not happen) */
		ret = lmbox_set_error(store, LMBOX_ERR_NOTFOUND,
			"%s: message uid %u in folder %u was replaced while being read",
			store->dir, body->uid, body->folder_id);
	} else {
		if (ret == LMBOX_ERR_NOTFOUND) {
			/* the message exists but its segment does not */
			ret = LMBOX_ERR_CORRUPT;
		}
		memcpy(store->errmsg, saved, sizeof(saved));
	}
	mdb_txn_abort(txn);
	return ret;
}

static int lmbox_body_open_real(struct lmbox_body *body)
{
	struct lmbox_store *store = body->store;
	struct lmbox_blob_hdr hdr;
	unsigned char hbuf[LMBOX_BLOB_HDR_SIZE];
	int ret;

	if ((ret = lmbox_seg_open_read(store, body->seg_id, &body->fd)) < 0)
		return ret;
	ret = lmbox_pread_full(store, body->fd, hbuf, sizeof(hbuf), body->seg_offset, "segment");
	if (ret < 0) {
		char cause[LMBOX_ERRMSG_SIZE];

		memcpy(cause, store->errmsg, sizeof(cause));
		return lmbox_set_error(store, ret,
			"%s/seg/%08X: blob header of uid %u in folder %u at offset %llu unreadable (%.200s)",
			store->dir, body->seg_id, body->uid, body->folder_id,
			(unsigned long long)body->seg_offset, cause);
	}
	if (lmbox_blob_hdr_decode(hbuf, sizeof(hbuf), &hdr) < 0) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: bad blob header of uid %u in folder %u at offset %llu",
			store->dir, body->seg_id, body->uid, body->folder_id,
			(unsigned long long)body->seg_offset);
	}
	if (hdr.codec != body->codec || hdr.phys_size != body->phys_size ||
	    hdr.stored_size != body->stored_size || hdr.checksum != body->checksum) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: blob header at offset %llu does not match the record "
			"of uid %u in folder %u", store->dir, body->seg_id,
			(unsigned long long)body->seg_offset, body->uid, body->folder_id);
	}
	if (body->codec != LMBOX_CODEC_RAW) {
		if (inflateInit(&body->zs) != Z_OK)
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "inflateInit failed");
		body->z_init = true;
	}
	return 0;
}

int lmbox_body_open(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
		    struct lmbox_body **body_r)
{
	struct lmbox_body *body;
	int ret;

	*body_r = NULL;
	if ((ret = lmbox_store_check_usable(store, false)) < 0)
		return ret;
	if (meta->codec > LMBOX_CODEC_MAX || meta->seg_id == 0 ||
	    meta->phys_size > LMBOX_MAX_MESSAGE_SIZE) {
		return lmbox_set_error(store, LMBOX_ERR_INVALID,
			"%s: bad message meta for uid %u in folder %u",
			store->dir, meta->uid, meta->folder_id);
	}
	__atomic_add_fetch(&lmbox_body_opens, 1, __ATOMIC_RELAXED);
	/* not calloc: the 64 KiB input buffer needs no clearing */
	if ((body = malloc(sizeof(*body))) == NULL)
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
	memset(body, 0, offsetof(struct lmbox_body, inbuf));
	body->store = store;
	body->fd = -1;
	body->folder_id = meta->folder_id;
	body->uid = meta->uid;
	body->seg_id = meta->seg_id;
	body->seg_offset = meta->seg_offset;
	body->data_offset = meta->seg_offset + LMBOX_BLOB_HDR_SIZE;
	body->phys_size = meta->phys_size;
	body->stored_size = meta->stored_size;
	body->checksum = meta->checksum;
	body->codec = meta->codec;
	body->crc = (uint32_t)crc32(0, NULL, 0);
	snprintf(body->what, sizeof(body->what), "%s/seg/%08X (uid %u in folder %u)",
		 store->dir, body->seg_id, body->uid, body->folder_id);
	if ((ret = lmbox_body_open_real(body)) < 0 &&
	    (ret = lmbox_body_failed(body, ret, true)) == 1) {
		/* moved by compaction: open it where it is now */
		if (body->fd >= 0)
			close(body->fd);
		body->fd = -1;
		snprintf(body->what, sizeof(body->what), "%s/seg/%08X (uid %u in folder %u)",
			 store->dir, body->seg_id, body->uid, body->folder_id);
		ret = lmbox_body_open_real(body);
		if (ret < 0)
			ret = lmbox_body_failed(body, ret, false);
	}
	if (ret < 0) {
		lmbox_body_close(&body);
		return ret;
	}
	*body_r = body;
	return 0;
}

static int lmbox_body_finish(struct lmbox_body *body)
{
	struct lmbox_store *store = body->store;

	if (body->out_pos != body->phys_size) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: body of uid %u in folder %u has %llu bytes, expected %llu",
			store->dir, body->seg_id, body->uid, body->folder_id,
			(unsigned long long)body->out_pos, (unsigned long long)body->phys_size);
	}
	if (body->crc != body->checksum) {
		return lmbox_set_error(store, LMBOX_ERR_CHECKSUM,
			"%s/seg/%08X: body of uid %u in folder %u fails its CRC-32 "
			"(%08x, expected %08x)", store->dir, body->seg_id, body->uid,
			body->folder_id, body->crc, body->checksum);
	}
	body->finished = true;
	return 0;
}

static ssize_t lmbox_body_read_raw(struct lmbox_body *body, unsigned char *buf, size_t size)
{
	uint64_t left = body->phys_size - body->out_pos;
	size_t n = left < size ? (size_t)left : size;
	int ret;

	if (n == 0)
		return lmbox_body_finish(body);
	ret = lmbox_pread_full(body->store, body->fd, buf, n,
			       body->data_offset + body->out_pos, body->what);
	if (ret < 0)
		return ret;
	body->out_pos += n;
	body->crc = (uint32_t)crc32(body->crc, buf, (uInt)n);
	return (ssize_t)n;
}

static ssize_t lmbox_body_read_deflate(struct lmbox_body *body, unsigned char *buf, size_t size)
{
	struct lmbox_store *store = body->store;
	z_stream *zs = &body->zs;
	size_t produced;
	int zret, ret;

	if (size > UINT32_MAX)
		size = UINT32_MAX;
	zs->next_out = buf;
	zs->avail_out = (uInt)size;
	while (zs->avail_out == size && !body->z_end) {
		if (zs->avail_in == 0 && body->in_pos < body->stored_size) {
			uint64_t left = body->stored_size - body->in_pos;
			size_t n = left < sizeof(body->inbuf) ? (size_t)left : sizeof(body->inbuf);

			ret = lmbox_pread_full(store, body->fd, body->inbuf, n,
					       body->data_offset + body->in_pos, body->what);
			if (ret < 0)
				return ret;
			body->in_pos += n;
			zs->next_in = body->inbuf;
			zs->avail_in = (uInt)n;
		}
		zret = inflate(zs, Z_NO_FLUSH);
		if (zret == Z_NEED_DICT && body->codec == LMBOX_CODEC_DEFLATE_DICT1 &&
		    !body->z_dict && zs->adler == LMBOX_DICT1_ADLER32) {
			/* the stream's DICTID names dictionary 1: go on with it */
			if (inflateSetDictionary(zs, lmbox_dict1, (uInt)lmbox_dict1_size) != Z_OK) {
				return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
					"%s/seg/%08X: inflateSetDictionary for uid %u in folder %u failed",
					store->dir, body->seg_id, body->uid, body->folder_id);
			}
			body->z_dict = true;
			continue;
		}
		if (zret == Z_NEED_DICT) {
			/* codec 1 stream asking for a dictionary, or another one */
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s/seg/%08X: compressed body of uid %u in folder %u wants "
				"dictionary %08lX (codec %u)", store->dir, body->seg_id,
				body->uid, body->folder_id, (unsigned long)zs->adler, body->codec);
		}
		if (zret == Z_STREAM_END && body->codec == LMBOX_CODEC_DEFLATE_DICT1 &&
		    !body->z_dict) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s/seg/%08X: compressed body of uid %u in folder %u (codec %u) "
				"has no dictionary", store->dir, body->seg_id, body->uid,
				body->folder_id, body->codec);
		}
		if (zret == Z_STREAM_END) {
			body->z_end = true;
		} else if (zret == Z_BUF_ERROR && zs->avail_in == 0 &&
			   body->in_pos == body->stored_size) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s/seg/%08X: compressed body of uid %u in folder %u is truncated",
				store->dir, body->seg_id, body->uid, body->folder_id);
		} else if (zret == Z_DATA_ERROR || zret == Z_NEED_DICT) {
			bool check = zs->msg != NULL && strstr(zs->msg, "check") != NULL;
			return lmbox_set_error(store, check ? LMBOX_ERR_CHECKSUM : LMBOX_ERR_CORRUPT,
				"%s/seg/%08X: compressed body of uid %u in folder %u is damaged (%s)",
				store->dir, body->seg_id, body->uid, body->folder_id,
				zs->msg != NULL ? zs->msg : "inflate error");
		} else if (zret == Z_MEM_ERROR) {
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "inflate: out of memory");
		} else if (zret != Z_OK && zret != Z_BUF_ERROR) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s/seg/%08X: inflate of uid %u in folder %u failed (%d)",
				store->dir, body->seg_id, body->uid, body->folder_id, zret);
		}
	}
	produced = size - zs->avail_out;
	if (body->out_pos + produced > body->phys_size) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: body of uid %u in folder %u inflates beyond its size %llu",
			store->dir, body->seg_id, body->uid, body->folder_id,
			(unsigned long long)body->phys_size);
	}
	body->out_pos += produced;
	body->crc = (uint32_t)crc32(body->crc, buf, (uInt)produced);
	if (produced > 0)
		return (ssize_t)produced;
	if (zs->avail_in != 0 || body->in_pos != body->stored_size) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: compressed body of uid %u in folder %u has trailing bytes",
			store->dir, body->seg_id, body->uid, body->folder_id);
	}
	return lmbox_body_finish(body);
}

ssize_t lmbox_body_read(struct lmbox_body *body, void *buf, size_t size)
{
	ssize_t ret;

	if (body->error < 0)
		return body->error;
	if ((ret = lmbox_store_check_usable(body->store, false)) < 0)
		return ret;
	if (body->finished)
		return 0;
	if (size == 0) {
		return lmbox_set_error(body->store, LMBOX_ERR_INVALID,
				       "lmbox_body_read with size 0");
	}
	ret = body->codec == LMBOX_CODEC_RAW ?
		lmbox_body_read_raw(body, buf, size) :
		lmbox_body_read_deflate(body, buf, size);
	if (ret < 0) {
		ret = lmbox_body_failed(body, (int)ret, false);
		body->error = (int)ret;
	}
	return ret;
}

void lmbox_body_close(struct lmbox_body **_body)
{
	struct lmbox_body *body = *_body;

	if (body == NULL)
		return;
	*_body = NULL;
	if (body->z_init)
		inflateEnd(&body->zs);
	if (body->fd >= 0)
		close(body->fd);
	free(body);
}

int lmbox_body_read_all(struct lmbox_store *store, const struct lmbox_msg_meta *meta,
			unsigned char **data_r, size_t *size_r)
{
	struct lmbox_body *body;
	unsigned char *data;
	size_t pos = 0;
	ssize_t n;
	int ret;

	*data_r = NULL;
	*size_r = 0;
	if ((ret = lmbox_body_open(store, meta, &body)) < 0)
		return ret;
	/* +1: room to notice a body longer than its recorded size */
	if ((data = malloc((size_t)meta->phys_size + 1)) == NULL) {
		lmbox_body_close(&body);
		return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory for a %llu byte body",
				       (unsigned long long)meta->phys_size);
	}
	while ((n = lmbox_body_read(body, data + pos, (size_t)meta->phys_size + 1 - pos)) > 0)
		pos += (size_t)n;
	lmbox_body_close(&body);
	if (n < 0) {
		free(data);
		return (int)n;
	}
	*data_r = data;
	*size_r = pos;
	return 0;
}
