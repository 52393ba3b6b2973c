/*
 * libFuzzer target: the transformed stream of codec 3 (storage/lmbox-xform.c).
 * The first input byte picks the mode and the piece sizes:
 *
 *   even: the rest is a transformed stream, decoded for a message size
 *         taken from the next 3 bytes (a stream inflates to anything, so
 *         the decoder sees exactly these bytes); any result but a crash or
 *         more output than that size is fine, and success means exactly
 *         that size came out;
 *   odd:  the rest is a message: written through the encoder, the stream
 *         must decode back to exactly the message.
 *
 * Input and output go through in pieces of sizes picked by the first
 * byte, so that records, lines and padding straddle them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmbox-private.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct buf {
	unsigned char *data;
	size_t len, alloc;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
	if (b->len + len > b->alloc) {
		b->alloc = (b->len + len) * 2 + 64;
		b->data = realloc(b->data, b->alloc);
		CHECK(b->data != NULL);
	}
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
}

static int emit_cb(void *ctx, const void *data, size_t size)
{
	buf_add(ctx, data, size);
	return 0;
}

static const size_t in_pieces[] = { 1, 2, 5, 6, 7, 64, 1000, 100000 };
static const size_t out_pieces[] = { 1, 3, 4, 77, 78, 1022, 4096, 100000 };

/* 0 and the output in *out, or -1 */
static int decode(const uint8_t *data, size_t size, uint64_t out_size, unsigned int mode,
		  struct buf *out)
{
	static unsigned char obuf[100000];
	struct lmbox_xf_dec dec;
	size_t in_piece = in_pieces[(mode >> 1) & 7], out_piece = out_pieces[(mode >> 4) & 7];
	size_t pos = 0;

	lmbox_xf_dec_init(&dec, out_size);
	while (pos < size) {
		const unsigned char *in = data + pos;
		size_t in_len = size - pos < in_piece ? size - pos : in_piece;
		ssize_t n;

		pos += in_len;
		do {
			n = lmbox_xf_dec_run(&dec, &in, &in_len, obuf, out_piece);
			if (n < 0) {
				CHECK(dec.err != NULL);
				return -1;
			}
			buf_add(out, obuf, (size_t)n);
			CHECK(out->len <= out_size);
		} while (n > 0);
		CHECK(in_len == 0);
	}
	if (lmbox_xf_dec_end(&dec) < 0)
		return -1;
	CHECK(out->len == out_size);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = { NULL, 0, 0 }, xf = { NULL, 0, 0 };
	unsigned int mode;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if ((mode & 1) == 0) {
		uint64_t out_size;

		if (size < 3)
			return 0;
		out_size = (uint64_t)data[0] | (uint64_t)data[1] << 8 | (uint64_t)data[2] << 16;
		(void)decode(data + 3, size - 3, out_size, mode, &out);
	} else {
		struct lmbox_xf_enc *enc = lmbox_xf_enc_new(emit_cb, &xf);
		size_t piece = in_pieces[(mode >> 1) & 7], pos = 0;
		bool plain;

		CHECK(enc != NULL);
		while (pos < size) {
			size_t n = size - pos < piece ? size - pos : piece;

			CHECK(lmbox_xf_enc_write(enc, data + pos, n) == 0);
			pos += n;
		}
		CHECK(lmbox_xf_enc_finish(enc, (mode & 0x80) != 0, &plain) == 0);
		lmbox_xf_enc_free(&enc);
		if (plain) {
			CHECK(xf.len == size && (size == 0 || memcmp(xf.data, data, size) == 0));
		} else {
			CHECK(decode(xf.data, xf.len, size, mode, &out) == 0);
			CHECK(out.len == size && (size == 0 || memcmp(out.data, data, size) == 0));
		}
	}
	free(out.data);
	free(xf.data);
	return 0;
}
