/*
 * lmbox-xform.c: the transformed stream of codec 3 (docs/design.md "Body
 * codecs").  Base64 mail parts cost deflate about 0.76 of their size, the
 * bytes they encode 0.73 of it (random data) and far less when those bytes
 * compress; so before deflate, runs of canonical base64 lines are replaced
 * by the bytes they decode to, and the reader encodes them again.
 *
 * The stream is a sequence of records, each a 6-byte header and a payload:
 *
 *   byte 0     type: 1 literal, 2 base64 lines ending in LF, 3 ... in CRLF
 *   byte 1     literal: 0; base64: q, the line length L = 4q chars (1..255)
 *   bytes 2-5  payload length n, u32 LE, >= 1
 *   n bytes    literal: the bytes themselves; base64: the decoded bytes
 *
 * A base64 record stands for the lines that encoding its n bytes 3L/4 to a
 * line gives: floor(n / (3L/4)) full lines of L chars and, if bytes are
 * left, one last line of 4*ceil(rest/3) chars with '=' padding; every line
 * followed by the EOL.  The writer only replaces lines that this encoding
 * reproduces byte for byte (checked at save), so the transform is exact.
 *
 * Writer (lmbox_xf_enc_*): lines are split as they arrive; a run starts at
 * a line of 16-1020 base64 chars (a multiple of 4, no padding) and goes on
 * over lines of the same length and EOL; a shorter line (or a padded one)
 * that re-encodes exactly ends it as its last line.  Runs of fewer than
 * LMBOX_XF_MIN_LINES lines stay literal.  Records carry at most
 * LMBOX_XF_CHUNK payload bytes.
 *
 * Reader (lmbox_xf_dec_*): a push decoder with bounded state.  Every
 * header is checked (type, q, n >= 1) and the bytes its record expands to
 * are checked against what is left of the message's size before anything
 * is produced, so a corrupt stream is reported (-1, dec->err) and never
 * produces more than the recorded size or reads past its input.
 */
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

static const char lmbox_b64_chars[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 char -> its 6 bits; 0xff for anything else ('=' included) */
static const unsigned char lmbox_b64_val[256] = {
#define X 0xff
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, 62, X, X, X, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X, X, X, X, X, X,
	X, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X, X, X, X, X,
	X, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
#undef X
};

/* Encodes n (1..3L/4) bytes as one line plus its EOL (1 LF, 2 CRLF) into
 * dst, which has room for 4*ceil(n/3) + 2; returns the length written. */
static size_t lmbox_b64_line(const unsigned char *src, size_t n, unsigned int eol,
			     unsigned char *dst)
{
	unsigned char *d = dst;

	for (; n >= 3; n -= 3, src += 3) {
		uint32_t v = ((uint32_t)src[0] << 16) | ((uint32_t)src[1] << 8) | src[2];

		d[0] = (unsigned char)lmbox_b64_chars[v >> 18];
		d[1] = (unsigned char)lmbox_b64_chars[(v >> 12) & 63];
		d[2] = (unsigned char)lmbox_b64_chars[(v >> 6) & 63];
		d[3] = (unsigned char)lmbox_b64_chars[v & 63];
		d += 4;
	}
	if (n > 0) {
		uint32_t v = (uint32_t)src[0] << 16 | (n == 2 ? (uint32_t)src[1] << 8 : 0);

		d[0] = (unsigned char)lmbox_b64_chars[v >> 18];
		d[1] = (unsigned char)lmbox_b64_chars[(v >> 12) & 63];
		d[2] = n == 2 ? (unsigned char)lmbox_b64_chars[(v >> 6) & 63] : '=';
		d[3] = '=';
		d += 4;
	}
	if (eol == 2)
		*d++ = '\r';
	*d++ = '\n';
	return (size_t)(d - dst);
}

/* ------------------------------------------------------------- writer */

struct lmbox_xf_enc {
	lmbox_xf_emit_fn *emit;
	void *ctx;
	bool started;         /* a record went out: the stream is codec 3 */
	bool long_line;       /* inside a line too long to be base64 */
	bool in_run, run_out; /* run_out: part of the run went out already */
	unsigned int run_l, run_eol, run_lines;
	size_t lit_len, run_len, line_len;
	unsigned char line[LMBOX_XF_MAX_L + 2];
	unsigned char tmp[LMBOX_XF_MAX_L + 2];
	unsigned char dec[LMBOX_XF_MAX_L / 4 * 3];
	unsigned char lit[LMBOX_XF_CHUNK];
	unsigned char run[LMBOX_XF_CHUNK];
};

struct lmbox_xf_enc *lmbox_xf_enc_new(lmbox_xf_emit_fn *emit, void *ctx)
{
	struct lmbox_xf_enc *enc;

	/* not calloc: the buffers need no clearing */
	if ((enc = malloc(sizeof(*enc))) == NULL)
		return NULL;
	memset(enc, 0, offsetof(struct lmbox_xf_enc, line));
	enc->emit = emit;
	enc->ctx = ctx;
	return enc;
}

void lmbox_xf_enc_free(struct lmbox_xf_enc **_enc)
{
	free(*_enc);
	*_enc = NULL;
}

static int lmbox_xf_record(struct lmbox_xf_enc *enc, unsigned int type, unsigned int q,
			   const unsigned char *payload, size_t n)
{
	unsigned char hdr[LMBOX_XF_HDR];
	int ret;

	hdr[0] = (unsigned char)type;
	hdr[1] = (unsigned char)q;
	hdr[2] = (unsigned char)n;
	hdr[3] = (unsigned char)(n >> 8);
	hdr[4] = (unsigned char)(n >> 16);
	hdr[5] = (unsigned char)(n >> 24);
	enc->started = true;
	if ((ret = enc->emit(enc->ctx, hdr, sizeof(hdr))) < 0)
		return ret;
	return enc->emit(enc->ctx, payload, n);
}

static int lmbox_xf_lit_flush(struct lmbox_xf_enc *enc)
{
	int ret;

	if (enc->lit_len == 0)
		return 0;
	ret = lmbox_xf_record(enc, LMBOX_XF_LITERAL, 0, enc->lit, enc->lit_len);
	enc->lit_len = 0;
	return ret;
}

static int lmbox_xf_lit_add(struct lmbox_xf_enc *enc, const unsigned char *p, size_t n)
{
	int ret;

	while (n > 0) {
		size_t k = sizeof(enc->lit) - enc->lit_len;

		if (k == 0) {
			if ((ret = lmbox_xf_lit_flush(enc)) < 0)
				return ret;
			k = sizeof(enc->lit);
		}
		if (k > n)
			k = n;
		memcpy(enc->lit + enc->lit_len, p, k);
		enc->lit_len += k;
		p += k;
		n -= k;
	}
	return 0;
}

/* The run's decoded bytes so far go out as one record. */
static int lmbox_xf_run_flush(struct lmbox_xf_enc *enc)
{
	int ret;

	if (enc->run_len == 0)
		return 0;
	if ((ret = lmbox_xf_lit_flush(enc)) < 0)
		return ret;
	ret = lmbox_xf_record(enc, enc->run_eol == 2 ? LMBOX_XF_B64_CRLF : LMBOX_XF_B64_LF,
			      enc->run_l / 4, enc->run, enc->run_len);
	enc->run_len = 0;
	enc->run_out = true;
	return ret;
}

static int lmbox_xf_run_end(struct lmbox_xf_enc *enc)
{
	size_t lb = enc->run_l / 4 * 3;
	int ret = 0;

	if (!enc->in_run)
		return 0;
	enc->in_run = false;
	if (enc->run_out || enc->run_lines >= LMBOX_XF_MIN_LINES)
		return lmbox_xf_run_flush(enc);
	/* too short to be worth a record: its lines, re-encoded (they were
	   checked to re-encode exactly), stay literal */
	for (size_t off = 0; off < enc->run_len && ret == 0; off += lb) {
		size_t k = enc->run_len - off < lb ? enc->run_len - off : lb;
		size_t len = lmbox_b64_line(enc->run + off, k, enc->run_eol, enc->tmp);

		ret = lmbox_xf_lit_add(enc, enc->tmp, len);
	}
	enc->run_len = 0;
	return ret;
}

/* Decodes len chars of base64 (len a multiple of 4, '=' padding allowed at
 * the end only) into enc->dec; its length, or -1.  Then checks that encoding
 * the result gives the same chars (no stray bits in the last quantum). */
static ssize_t lmbox_xf_decode_line(struct lmbox_xf_enc *enc, const unsigned char *s,
				    size_t len, unsigned int eol, bool *padded_r)
{
	unsigned char *d = enc->dec;
	size_t i, n, pad = 0;

	*padded_r = false;
	if (len == 0 || len % 4 != 0 || len > LMBOX_XF_MAX_L)
		return -1;
	if (s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	for (i = 0; i + 4 <= len - (pad > 0 ? 4 : 0); i += 4) {
		unsigned int a = lmbox_b64_val[s[i]], b = lmbox_b64_val[s[i + 1]];
		unsigned int c = lmbox_b64_val[s[i + 2]], e = lmbox_b64_val[s[i + 3]];

		if ((a | b | c | e) > 63)
			return -1;
		*d++ = (unsigned char)(a << 2 | b >> 4);
		*d++ = (unsigned char)(b << 4 | c >> 2);
		*d++ = (unsigned char)(c << 6 | e);
	}
	if (pad > 0) {
		unsigned int a = lmbox_b64_val[s[i]], b = lmbox_b64_val[s[i + 1]];
		unsigned int c = pad == 1 ? lmbox_b64_val[s[i + 2]] : 0;

		if (a > 63 || b > 63 || c > 63)
			return -1;
		*d++ = (unsigned char)(a << 2 | b >> 4);
		if (pad == 1)
			*d++ = (unsigned char)(b << 4 | c >> 2);
		*padded_r = true;
	}
	n = (size_t)(d - enc->dec);
	/* the check the format rests on: the line is what encoding gives */
	if (lmbox_b64_line(enc->dec, n, eol, enc->tmp) != len + eol ||
	    memcmp(enc->tmp, s, len) != 0)
		return -1;
	return (ssize_t)n;
}

static int lmbox_xf_run_add(struct lmbox_xf_enc *enc, size_t n)
{
	int ret;

	if (enc->run_len + n > sizeof(enc->run) && (ret = lmbox_xf_run_flush(enc)) < 0)
		return ret;
	memcpy(enc->run + enc->run_len, enc->dec, n);
	enc->run_len += n;
	enc->run_lines++;
	return 0;
}

/* One whole line (with its LF) of at most LMBOX_XF_MAX_L + 2 bytes. */
static int lmbox_xf_line(struct lmbox_xf_enc *enc, const unsigned char *p, size_t n)
{
	unsigned int eol = n >= 2 && p[n - 2] == '\r' ? 2 : 1;
	size_t clen = n - eol;
	bool padded;
	ssize_t k;
	int ret;

	if (enc->in_run) {
		if (eol == enc->run_eol && clen <= enc->run_l && clen > 0 && clen % 4 == 0 &&
		    (k = lmbox_xf_decode_line(enc, p, clen, eol, &padded)) > 0) {
			if ((ret = lmbox_xf_run_add(enc, (size_t)k)) < 0)
				return ret;
			if (clen == enc->run_l && !padded)
				return 0;
			/* a shorter (or padded) line is the run's last */
			return lmbox_xf_run_end(enc);
		}
		if ((ret = lmbox_xf_run_end(enc)) < 0)
			return ret;
	}
	if (clen >= LMBOX_XF_MIN_L && clen <= LMBOX_XF_MAX_L && clen % 4 == 0 &&
	    lmbox_b64_val[p[0]] != 0xff &&
	    (k = lmbox_xf_decode_line(enc, p, clen, eol, &padded)) > 0 && !padded) {
		enc->in_run = true;
		enc->run_out = false;
		enc->run_l = (unsigned int)clen;
		enc->run_eol = eol;
		enc->run_lines = 0;
		enc->run_len = 0;
		return lmbox_xf_run_add(enc, (size_t)k);
	}
	return lmbox_xf_lit_add(enc, p, n);
}

int lmbox_xf_enc_write(struct lmbox_xf_enc *enc, const void *data, size_t size)
{
	const unsigned char *p = data, *nl;
	size_t n;
	int ret;

	while (size > 0) {
		nl = memchr(p, '\n', size);
		n = nl != NULL ? (size_t)(nl - p) + 1 : size;
		if (enc->long_line) {
			if ((ret = lmbox_xf_lit_add(enc, p, n)) < 0)
				return ret;
			enc->long_line = nl == NULL;
		} else if (enc->line_len + n > sizeof(enc->line)) {
			/* too long for base64 as written here: literal up to
			   its end */
			if ((ret = lmbox_xf_run_end(enc)) < 0 ||
			    (ret = lmbox_xf_lit_add(enc, enc->line, enc->line_len)) < 0 ||
			    (ret = lmbox_xf_lit_add(enc, p, n)) < 0)
				return ret;
			enc->line_len = 0;
			enc->long_line = nl == NULL;
		} else if (nl != NULL && enc->line_len == 0) {
			if ((ret = lmbox_xf_line(enc, p, n)) < 0)
				return ret;
		} else {
			memcpy(enc->line + enc->line_len, p, n);
			enc->line_len += n;
			if (nl != NULL) {
				size_t len = enc->line_len;

				enc->line_len = 0;
				if ((ret = lmbox_xf_line(enc, enc->line, len)) < 0)
					return ret;
			}
		}
		p += n;
		size -= n;
	}
	return 0;
}

int lmbox_xf_enc_finish(struct lmbox_xf_enc *enc, bool allow_plain, bool *plain_r)
{
	int ret;

	*plain_r = false;
	/* a last line without LF is never base64 here */
	if ((ret = lmbox_xf_run_end(enc)) < 0 ||
	    (ret = lmbox_xf_lit_add(enc, enc->line, enc->line_len)) < 0)
		return ret;
	enc->line_len = 0;
	if (allow_plain && !enc->started) {
		/* no base64 in the whole message, and all of it still here:
		   the caller writes it as a plain stream, no record headers */
		*plain_r = true;
		ret = enc->lit_len == 0 ? 0 : enc->emit(enc->ctx, enc->lit, enc->lit_len);
		enc->lit_len = 0;
		return ret;
	}
	return lmbox_xf_lit_flush(enc);
}

/* ------------------------------------------------------------- reader */

void lmbox_xf_dec_init(struct lmbox_xf_dec *dec, uint64_t out_size)
{
	memset(dec, 0, offsetof(struct lmbox_xf_dec, line));
	dec->out_left = out_size;
}

static ssize_t lmbox_xf_corrupt(struct lmbox_xf_dec *dec, const char *why)
{
	dec->err = why;
	return -1;
}

/* A whole record header is in dec->hdr: check it and its expansion. */
static int lmbox_xf_dec_header(struct lmbox_xf_dec *dec)
{
	const unsigned char *h = dec->hdr;
	uint32_t n = (uint32_t)h[2] | (uint32_t)h[3] << 8 | (uint32_t)h[4] << 16 |
		(uint32_t)h[5] << 24;
	uint64_t expand;

	dec->hdr_len = 0;
	if (n == 0)
		return (int)lmbox_xf_corrupt(dec, "empty record");
	if (h[0] == LMBOX_XF_LITERAL) {
		if (h[1] != 0)
			return (int)lmbox_xf_corrupt(dec, "literal record with a line length");
		expand = n;
		dec->eol = 0;
	} else if (h[0] == LMBOX_XF_B64_LF || h[0] == LMBOX_XF_B64_CRLF) {
		uint64_t lb, full, rest;

		if (h[1] == 0)
			return (int)lmbox_xf_corrupt(dec, "base64 record with line length 0");
		dec->eol = h[0] == LMBOX_XF_B64_CRLF ? 2 : 1;
		dec->lb = (unsigned int)h[1] * 3;
		lb = dec->lb;
		full = n / lb;
		rest = n % lb;
		expand = full * (lb / 3 * 4 + dec->eol) +
			(rest > 0 ? (rest + 2) / 3 * 4 + dec->eol : 0);
	} else {
		return (int)lmbox_xf_corrupt(dec, "unknown record type");
	}
	if (expand > dec->out_left)
		return (int)lmbox_xf_corrupt(dec, "record longer than the message");
	dec->out_left -= expand;
	dec->rec_left = n;
	return 0;
}

ssize_t lmbox_xf_dec_run(struct lmbox_xf_dec *dec, const unsigned char **_in,
			 size_t *_in_len, unsigned char *out, size_t out_size)
{
	const unsigned char *in = *_in;
	size_t in_len = *_in_len, done = 0, n;

	while (done < out_size) {
		if (dec->pend_pos < dec->pend_len) {
			n = dec->pend_len - dec->pend_pos;
			if (n > out_size - done)
				n = out_size - done;
			memcpy(out + done, dec->pend + dec->pend_pos, n);
			dec->pend_pos += n;
			done += n;
			continue;
		}
		if (dec->rec_left == 0) {
			if (in_len == 0)
				break;
			n = LMBOX_XF_HDR - dec->hdr_len;
			if (n > in_len)
				n = in_len;
			memcpy(dec->hdr + dec->hdr_len, in, n);
			dec->hdr_len += (unsigned int)n;
			in += n;
			in_len -= n;
			if (dec->hdr_len == LMBOX_XF_HDR && lmbox_xf_dec_header(dec) < 0) {
				done = 0;
				goto fail;
			}
			continue;
		}
		if (dec->eol == 0) {
			/* literal */
			n = dec->rec_left < in_len ? (size_t)dec->rec_left : in_len;
			if (n > out_size - done)
				n = out_size - done;
			if (n == 0)
				break;
			memcpy(out + done, in, n);
			in += n;
			in_len -= n;
			done += n;
			dec->rec_left -= n;
			continue;
		} else {
			/* base64: one line's bytes, from the input or gathered */
			size_t want = dec->rec_left < dec->lb ? (size_t)dec->rec_left : dec->lb;
			size_t room = (want + 2) / 3 * 4 + dec->eol;
			const unsigned char *src;

			if (dec->line_len == 0 && in_len >= want) {
				src = in;
				in += want;
				in_len -= want;
			} else {
				n = want - dec->line_len;
				if (n > in_len)
					n = in_len;
				memcpy(dec->line + dec->line_len, in, n);
				dec->line_len += (unsigned int)n;
				in += n;
				in_len -= n;
				if (dec->line_len < want)
					break;
				src = dec->line;
				dec->line_len = 0;
			}
			if (out_size - done >= room) {
				done += lmbox_b64_line(src, want, dec->eol, out + done);
			} else {
				dec->pend_len = lmbox_b64_line(src, want, dec->eol, dec->pend);
				dec->pend_pos = 0;
			}
			dec->rec_left -= want;
		}
	}
	*_in = in;
	*_in_len = in_len;
	return (ssize_t)done;
fail:
	*_in = in;
	*_in_len = in_len;
	return -1;
}

int lmbox_xf_dec_end(struct lmbox_xf_dec *dec)
{
	if (dec->hdr_len != 0 || dec->rec_left != 0)
		return (int)lmbox_xf_corrupt(dec, "stream ends inside a record");
	if (dec->pend_pos != dec->pend_len)
		return (int)lmbox_xf_corrupt(dec, "output left over");
	if (dec->out_left != 0)
		return (int)lmbox_xf_corrupt(dec, "stream shorter than the message");
	return 0;
}
