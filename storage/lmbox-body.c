/*
 * lmbox-body.c: reading message bodies.  A body stream reads the blob's
 * stored bytes from its segment in chunks and inflates them incrementally,
 * so a 50 MB message never needs 50 MB of memory.  The CRC-32 of the
 * physical bytes (and, compressed, the zlib stream's Adler-32) is checked
 * when the end is reached.  A body that cannot be
 * read because its message was expunged meanwhile (hole punched, segment
 * unlinked) is reported as LMBOX_ERR_NOTFOUND, not as corruption.
 * Codec 3 inflates into a buffer of its own and re-encodes the base64 runs
 * from there (lmbox-xform.c).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LMBOX_CKSUM_X86 1
#endif

#include "lmbox-private.h"

static uint64_t lmbox_body_opens;

/* Codec 3: the inflated (transformed) stream and its decoder. */
struct lmbox_body_xf {
	struct lmbox_xf_dec dec;
	const unsigned char *in;      /* inflated bytes not yet decoded */
	size_t in_len;
	unsigned char buf[LMBOX_IO_CHUNK];
};

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
	/* the zlib wrapper (RFC 1950) is parsed here and the deflate data
	   inflated raw, so that the Adler-32 of the output is computed by the
	   faster lmbox_adler32() (and checked against the trailer) instead of
	   zlib's own */
	uint32_t adler;
	unsigned char trailer[4];
	unsigned int trailer_len;
	bool z_init, z_hdr, z_end, z_dict, finished;
	struct lmbox_body_xf *xf;     /* codec 3 only */
	int error;
	char what[256];               /* names the blob in error messages */
	unsigned char inbuf[LMBOX_IO_CHUNK];  /* last: not cleared at open */
};

/* ------------------------------------------------------------ checksums
 *
 * Every byte of a body read is checksummed twice: the CRC-32 of the record
 * and, for a compressed body, the Adler-32 of the zlib stream.  zlib's
 * table-driven versions cost about 4 and 6 instructions a byte, almost half
 * as much as inflate itself (callgrind, RETR of 100 messages).  On x86-64
 * both have vector versions here (CRC-32 by carry-less multiplication
 * folding, Adler-32 by SSSE3 multiply-add), chosen at run time; they give
 * exactly zlib's crc32() and adler32() values (the unit tests compare them
 * on random data); elsewhere zlib's are used. */

#ifdef LMBOX_CKSUM_X86
/* Folds the 128-bit remainder x forward over the next 128 bits d: the
 * constants are x^(n+32) and x^(n-32) mod P (bit-reflected) for a distance
 * of n = 512 bits (4 lanes) or 128 bits (1 lane). */
__attribute__((target("pclmul,sse2")))
static inline __m128i lmbox_crc_fold(__m128i x, __m128i k, __m128i d)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
					   _mm_clmulepi64_si128(x, k, 0x11)), d);
}

/* len >= 64 */
__attribute__((target("pclmul,sse2")))
static uint32_t lmbox_crc32_pclmul(uint32_t crc, const unsigned char *p, size_t len)
{
	const __m128i k512 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
	const __m128i k128 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
	__m128i x0, x1, x2, x3;
	unsigned char rest[16];

	x0 = _mm_loadu_si128((const __m128i *)p);
	x1 = _mm_loadu_si128((const __m128i *)(p + 16));
	x2 = _mm_loadu_si128((const __m128i *)(p + 32));
	x3 = _mm_loadu_si128((const __m128i *)(p + 48));
	/* the register (~crc) enters as the first 32 bits of the message */
	x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
	p += 64;
	len -= 64;
	while (len >= 64) {
		x0 = lmbox_crc_fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
		x1 = lmbox_crc_fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = lmbox_crc_fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = lmbox_crc_fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
		p += 64;
		len -= 64;
	}
	x0 = lmbox_crc_fold(x0, k128, x1);
	x0 = lmbox_crc_fold(x0, k128, x2);
	x0 = lmbox_crc_fold(x0, k128, x3);
	while (len >= 16) {
		x0 = lmbox_crc_fold(x0, k128, _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	/* x0 is congruent to the message so far: its CRC from a zero
	   register (zlib's crc32 with ~0 in) is the message's */
	_mm_storeu_si128((__m128i *)rest, x0);
	crc = (uint32_t)crc32(0xffffffffUL, rest, sizeof(rest));
	return len == 0 ? crc : (uint32_t)crc32(crc, p, (uInt)len);
}

#define LMBOX_ADLER_BASE 65521U
/* bytes per reduction: the most 32-byte blocks under zlib's NMAX (5552) */
#define LMBOX_ADLER_BLOCKS (5552 / 32)

__attribute__((target("ssse3")))
static inline uint32_t lmbox_hsum32(__m128i v)
{
	v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
	v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
	return (uint32_t)_mm_cvtsi128_si32(v);
}

__attribute__((target("ssse3")))
static uint32_t lmbox_adler32_ssse3(uint32_t adler, const unsigned char *p, size_t len)
{
	const __m128i w_lo = _mm_setr_epi8(32, 31, 30, 29, 28, 27, 26, 25,
					   24, 23, 22, 21, 20, 19, 18, 17);
	const __m128i w_hi = _mm_setr_epi8(16, 15, 14, 13, 12, 11, 10, 9,
					   8, 7, 6, 5, 4, 3, 2, 1);
	const __m128i ones = _mm_set1_epi16(1), zero = _mm_setzero_si128();
	uint32_t s1 = adler & 0xffff, s2 = adler >> 16;

	while (len >= 32) {
		size_t blocks = len / 32;
		__m128i vs1, vs2, vps = zero;

		if (blocks > LMBOX_ADLER_BLOCKS)
			blocks = LMBOX_ADLER_BLOCKS;
		len -= blocks * 32;
		vs1 = _mm_cvtsi32_si128((int)s1);
		vs2 = _mm_cvtsi32_si128((int)s2);
		do {
			__m128i a = _mm_loadu_si128((const __m128i *)p);
			__m128i b = _mm_loadu_si128((const __m128i *)(p + 16));

			/* s2 gains 32 times s1 as it was before the block */
			vps = _mm_add_epi32(vps, vs1);
			vs1 = _mm_add_epi32(vs1, _mm_add_epi32(_mm_sad_epu8(a, zero),
							       _mm_sad_epu8(b, zero)));
			vs2 = _mm_add_epi32(vs2, _mm_madd_epi16(_mm_maddubs_epi16(a, w_lo), ones));
			vs2 = _mm_add_epi32(vs2, _mm_madd_epi16(_mm_maddubs_epi16(b, w_hi), ones));
			p += 32;
		} while (--blocks > 0);
		vs2 = _mm_add_epi32(vs2, _mm_slli_epi32(vps, 5));
		s1 = lmbox_hsum32(vs1) % LMBOX_ADLER_BASE;
		s2 = lmbox_hsum32(vs2) % LMBOX_ADLER_BASE;
	}
	while (len-- > 0) {
		s1 += *p++;
		s2 += s1;
	}
	return (s1 % LMBOX_ADLER_BASE) | ((s2 % LMBOX_ADLER_BASE) << 16);
}

#define LMBOX_CPU_KNOWN 1
#define LMBOX_CPU_PCLMUL 2
#define LMBOX_CPU_SSSE3 4
static int lmbox_cpu_flags;

/* The CPU features the checksums may use (LMBOX_CPU_*), found once. */
static int lmbox_cpu(void)
{
	int flags = __atomic_load_n(&lmbox_cpu_flags, __ATOMIC_RELAXED);

	if (flags == 0) {
		__builtin_cpu_init();
		flags = LMBOX_CPU_KNOWN |
			(__builtin_cpu_supports("pclmul") ? LMBOX_CPU_PCLMUL : 0) |
			(__builtin_cpu_supports("ssse3") ? LMBOX_CPU_SSSE3 : 0);
		__atomic_store_n(&lmbox_cpu_flags, flags, __ATOMIC_RELAXED);
	}
	return flags;
}
#endif

uint32_t lmbox_crc32(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

#ifdef LMBOX_CKSUM_X86
	if (len >= 64 && (lmbox_cpu() & LMBOX_CPU_PCLMUL) != 0)
		return lmbox_crc32_pclmul(crc, p, len);
#endif
	while (len > 0) {
		uInt n = len > UINT32_MAX ? UINT32_MAX : (uInt)len;

		crc = (uint32_t)crc32(crc, p, n);
		p += n;
		len -= n;
	}
	return crc;
}

uint32_t lmbox_adler32(uint32_t adler, const void *buf, size_t len)
{
	const unsigned char *p = buf;

#ifdef LMBOX_CKSUM_X86
	if ((lmbox_cpu() & LMBOX_CPU_SSSE3) != 0)
		return lmbox_adler32_ssse3(adler, p, len);
#endif
	while (len > 0) {
		uInt n = len > UINT32_MAX ? UINT32_MAX : (uInt)len;

		adler = (uint32_t)adler32(adler, p, n);
		p += n;
		len -= n;
	}
	return adler;
}

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
	if (body->codec != LMBOX_CODEC_RAW && !body->z_init) {
		if (inflateInit2(&body->zs, -MAX_WBITS) != Z_OK)
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "inflateInit2 failed");
		body->z_init = true;
	}
	if (body->codec == LMBOX_CODEC_DEFLATE_B64 || body->codec == LMBOX_CODEC_DEFLATE_B64_SDICT) {
		if (body->xf == NULL && (body->xf = malloc(sizeof(*body->xf))) == NULL)
			return lmbox_set_error(store, LMBOX_ERR_NOMEM, "out of memory");
		lmbox_xf_dec_init(&body->xf->dec, body->phys_size);
		body->xf->in_len = 0;
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
	body->adler = (uint32_t)adler32(0, NULL, 0);
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
	body->crc = lmbox_crc32(body->crc, buf, n);
	return (ssize_t)n;
}

/* Reads the next chunk of stored bytes if the input is used up. */
static int lmbox_body_fill(struct lmbox_body *body)
{
	z_stream *zs = &body->zs;
	uint64_t left;
	size_t n;
	int ret;

	if (zs->avail_in != 0 || body->in_pos >= body->stored_size)
		return 0;
	left = body->stored_size - body->in_pos;
	n = left < sizeof(body->inbuf) ? (size_t)left : sizeof(body->inbuf);
	ret = lmbox_pread_full(body->store, body->fd, body->inbuf, n,
			       body->data_offset + body->in_pos, body->what);
	if (ret < 0)
		return ret;
	body->in_pos += n;
	zs->next_in = body->inbuf;
	zs->avail_in = (uInt)n;
	return 0;
}

static int lmbox_body_truncated(struct lmbox_body *body)
{
	return lmbox_set_error(body->store, LMBOX_ERR_CORRUPT,
		"%s/seg/%08X: compressed body of uid %u in folder %u is truncated",
		body->store->dir, body->seg_id, body->uid, body->folder_id);
}

/* The zlib header (RFC 1950): CMF, FLG and, with FDICT, the DICTID. */
/* The zlib header names a dictionary the body may use: give it to inflate
 * and go past the 6 header bytes. */
static int lmbox_body_set_dict(struct lmbox_body *body, z_stream *zs,
			       const unsigned char *dict, size_t dict_len)
{
	if (inflateSetDictionary(zs, dict, (uInt)dict_len) != Z_OK) {
		return lmbox_set_error(body->store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: inflateSetDictionary for uid %u in folder %u failed",
			body->store->dir, body->seg_id, body->uid, body->folder_id);
	}
	body->z_dict = true;
	zs->next_in += 6;
	zs->avail_in -= 6;
	body->z_hdr = true;
	return 0;
}

static int lmbox_body_zlib_header(struct lmbox_body *body)
{
	struct lmbox_store *store = body->store;
	z_stream *zs = &body->zs;
	const unsigned char *p;
	unsigned int cmf, flg;
	uint32_t dictid;
	int ret;

	/* the first chunk holds the whole header (or all there is) */
	if ((ret = lmbox_body_fill(body)) < 0)
		return ret;
	p = zs->next_in;
	if (zs->avail_in < 2)
		return lmbox_body_truncated(body);
	cmf = p[0];
	flg = p[1];
	if ((cmf * 256 + flg) % 31 != 0) {
		return lmbox_set_error(store, LMBOX_ERR_CHECKSUM,
			"%s/seg/%08X: compressed body of uid %u in folder %u is damaged "
			"(incorrect header check)", store->dir, body->seg_id, body->uid,
			body->folder_id);
	}
	if ((cmf & 0x0f) != Z_DEFLATED || (cmf >> 4) + 8 > MAX_WBITS) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: compressed body of uid %u in folder %u is damaged "
			"(unknown compression method or window size %02x)", store->dir,
			body->seg_id, body->uid, body->folder_id, cmf);
	}
	if ((flg & 0x20) == 0) {
		if (body->codec != LMBOX_CODEC_DEFLATE) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
				"%s/seg/%08X: compressed body of uid %u in folder %u (codec %u) "
				"has no dictionary", store->dir, body->seg_id, body->uid,
				body->folder_id, body->codec);
		}
		zs->next_in += 2;
		zs->avail_in -= 2;
		body->z_hdr = true;
		return 0;
	}
	if (zs->avail_in < 6)
		return lmbox_body_truncated(body);
	dictid = ((uint32_t)p[2] << 24) | ((uint32_t)p[3] << 16) |
		((uint32_t)p[4] << 8) | p[5];
	if (body->codec == LMBOX_CODEC_DEFLATE_B64_SDICT) {
		/* the store's own dictionary the DICTID names */
		const unsigned char *dict;
		size_t dict_len;
		char cause[LMBOX_ERRMSG_SIZE];

		if ((ret = lmbox_sdict_get(store, dictid, &dict, &dict_len)) < 0) {
			memcpy(cause, store->errmsg, sizeof(cause));
			return lmbox_set_error(store, ret,
				"%s/seg/%08X: compressed body of uid %u in folder %u: %.300s",
				store->dir, body->seg_id, body->uid, body->folder_id, cause);
		}
		return lmbox_body_set_dict(body, zs, dict, dict_len);
	}
	if (body->codec == LMBOX_CODEC_DEFLATE || dictid != LMBOX_DICT1_ADLER32) {
		/* codec 1 stream asking for a dictionary, or another one */
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: compressed body of uid %u in folder %u wants "
			"dictionary %08lX (codec %u)", store->dir, body->seg_id,
			body->uid, body->folder_id, (unsigned long)dictid, body->codec);
	}
	/* the DICTID names dictionary 1: go on with it */
	return lmbox_body_set_dict(body, zs, lmbox_dict1, lmbox_dict1_size);
}

/* After the deflate data: the Adler-32 trailer, then nothing. */
static int lmbox_body_zlib_trailer(struct lmbox_body *body)
{
	struct lmbox_store *store = body->store;
	z_stream *zs = &body->zs;
	uint32_t want;
	int ret;

	while (body->trailer_len < sizeof(body->trailer)) {
		if (zs->avail_in == 0) {
			if (body->in_pos == body->stored_size)
				return lmbox_body_truncated(body);
			if ((ret = lmbox_body_fill(body)) < 0)
				return ret;
		}
		body->trailer[body->trailer_len++] = *zs->next_in++;
		zs->avail_in--;
	}
	if (zs->avail_in != 0 || body->in_pos != body->stored_size) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: compressed body of uid %u in folder %u has trailing bytes",
			store->dir, body->seg_id, body->uid, body->folder_id);
	}
	want = ((uint32_t)body->trailer[0] << 24) | ((uint32_t)body->trailer[1] << 16) |
		((uint32_t)body->trailer[2] << 8) | body->trailer[3];
	if (body->adler != want) {
		return lmbox_set_error(store, LMBOX_ERR_CHECKSUM,
			"%s/seg/%08X: compressed body of uid %u in folder %u is damaged "
			"(incorrect data check: Adler-32 %08x, expected %08x)", store->dir,
			body->seg_id, body->uid, body->folder_id, body->adler, want);
	}
	return 0;
}

/* Inflates into buf until something comes out or the stream ends; the
 * number of bytes, Adler-32 updated. */
static ssize_t lmbox_body_inflate(struct lmbox_body *body, unsigned char *buf, size_t size)
{
	struct lmbox_store *store = body->store;
	z_stream *zs = &body->zs;
	size_t produced;
	int zret, ret;

	if (!body->z_hdr && (ret = lmbox_body_zlib_header(body)) < 0)
		return ret;
	if (size > UINT32_MAX)
		size = UINT32_MAX;
	zs->next_out = buf;
	zs->avail_out = (uInt)size;
	while (zs->avail_out == size && !body->z_end) {
		if ((ret = lmbox_body_fill(body)) < 0)
			return ret;
		zret = inflate(zs, Z_NO_FLUSH);
		if (zret == Z_STREAM_END) {
			body->z_end = true;
		} else if (zret == Z_BUF_ERROR && zs->avail_in == 0 &&
			   body->in_pos == body->stored_size) {
			return lmbox_body_truncated(body);
		} else if (zret == Z_DATA_ERROR || zret == Z_NEED_DICT) {
			return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
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
	body->adler = lmbox_adler32(body->adler, buf, produced);
	return (ssize_t)produced;
}

static ssize_t lmbox_body_read_deflate(struct lmbox_body *body, unsigned char *buf, size_t size)
{
	struct lmbox_store *store = body->store;
	ssize_t produced;
	int ret;

	if ((produced = lmbox_body_inflate(body, buf, size)) < 0)
		return produced;
	if (body->out_pos + (size_t)produced > body->phys_size) {
		return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
			"%s/seg/%08X: body of uid %u in folder %u inflates beyond its size %llu",
			store->dir, body->seg_id, body->uid, body->folder_id,
			(unsigned long long)body->phys_size);
	}
	body->out_pos += (size_t)produced;
	body->crc = lmbox_crc32(body->crc, buf, (size_t)produced);
	if (produced > 0)
		return produced;
	if ((ret = lmbox_body_zlib_trailer(body)) < 0)
		return ret;
	return lmbox_body_finish(body);
}

static int lmbox_body_xf_corrupt(struct lmbox_body *body)
{
	struct lmbox_store *store = body->store;

	return lmbox_set_error(store, LMBOX_ERR_CORRUPT,
		"%s/seg/%08X: compressed body of uid %u in folder %u is damaged "
		"(base64 transform: %s)", store->dir, body->seg_id, body->uid,
		body->folder_id, body->xf->dec.err);
}

/* Codec 3: inflate into xf->buf, decode from there into buf. */
static ssize_t lmbox_body_read_xform(struct lmbox_body *body, unsigned char *buf, size_t size)
{
	struct lmbox_body_xf *xf = body->xf;
	ssize_t n;
	int ret;

	for (;;) {
		n = lmbox_xf_dec_run(&xf->dec, &xf->in, &xf->in_len, buf, size);
		if (n < 0)
			return lmbox_body_xf_corrupt(body);
		if (n > 0) {
			/* the decoder never goes beyond phys_size */
			body->out_pos += (size_t)n;
			body->crc = lmbox_crc32(body->crc, buf, (size_t)n);
			return n;
		}
		if (body->z_end)
			break;
		if ((n = lmbox_body_inflate(body, xf->buf, sizeof(xf->buf))) < 0)
			return n;
		xf->in = xf->buf;
		xf->in_len = (size_t)n;
	}
	if ((ret = lmbox_body_zlib_trailer(body)) < 0)
		return ret;
	if (lmbox_xf_dec_end(&xf->dec) < 0)
		return lmbox_body_xf_corrupt(body);
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
	ret = body->codec == LMBOX_CODEC_RAW ? lmbox_body_read_raw(body, buf, size) :
		body->codec >= LMBOX_CODEC_DEFLATE_B64 ? lmbox_body_read_xform(body, buf, size) :
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
	free(body->xf);
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
