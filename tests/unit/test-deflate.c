/*
 * test-deflate.c: the deflate streams of new messages start as copies of a
 * stream primed once per process (storage/lmbox-append.c,
 * lmbox_deflate_start).  Whatever the order of levels and dictionaries
 * asked for, each copy compresses byte for byte as a fresh
 * deflateInit() + deflateSetDictionary() does, and reusing the freed
 * blocks of earlier streams changes nothing (ASan/valgrind see the rest).
 * Messages through a store (every append uses it) are covered by
 * test-message, test-xform and test-sdict.
 */
#include <zlib.h>

#include "test-common.h"
#include "lmbox-private.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	return test_xorshift(&rng_state);
}

/* mail-like text with some noise */
static size_t make_input(unsigned char *buf, size_t size)
{
	static const char *words[] = { "Received: ", "from ", "the ", "mail ",
		"server\r\n", "Subject: ", "hello ", "world ", "=?utf-8?q?", "\r\n",
		"Content-Type: text/plain; charset=utf-8\r\n", "lorem ", "ipsum " };
	size_t len = 0, n = size / 2 + rnd() % (size / 2);

	while (len < n) {
		const char *w = words[rnd() % (sizeof(words) / sizeof(words[0]))];
		size_t wl = strlen(w);

		if (rnd() % 8 == 0) {
			buf[len++] = (unsigned char)rnd();
			continue;
		}
		if (len + wl > n)
			break;
		memcpy(buf + len, w, wl);
		len += wl;
	}
	return len;
}

static size_t compress_with(z_stream *zs, const unsigned char *in, size_t in_len,
			    unsigned char *out, size_t out_size)
{
	int rc;

	zs->next_in = (unsigned char *)in;
	zs->avail_in = (uInt)in_len;
	zs->next_out = out;
	zs->avail_out = (uInt)out_size;
	rc = deflate(zs, Z_FINISH);
	CHECK(rc == Z_STREAM_END);
	return out_size - zs->avail_out;
}

static void test_copies_equal_fresh(void)
{
	static unsigned char custom[4096], in[40000], out1[60000], out2[60000];
	static const int levels[] = { 1, 6, 9 };
	unsigned int i, k;

	for (i = 0; i < sizeof(custom); i++)
		custom[i] = (unsigned char)"abcdefgh tuvwxyz\r\n"[rnd() % 18];
	for (i = 0; i < 120; i++) {
		/* runs of the same key (block reuse) and switches (re-priming) */
		unsigned int key = (i / 3) % 7;
		int level = levels[key % 3];
		const unsigned char *dict = key < 3 ? lmbox_dict1 : key < 6 ? custom : NULL;
		size_t dict_len = key < 3 ? lmbox_dict1_size : key < 6 ? sizeof(custom) : 0;
		size_t in_len = make_input(in, sizeof(in));
		z_stream a, b;
		size_t n1, n2;

		memset(&a, 0, sizeof(a));
		CHECK(deflateInit(&a, level) == Z_OK);
		if (dict_len > 0)
			CHECK(deflateSetDictionary(&a, dict, (uInt)dict_len) == Z_OK);
		CHECK(lmbox_deflate_start(&b, level, dict, dict_len) == 0);
		/* a few streams alive at once, as in a transaction of several */
		for (k = 0; k < 2; k++) {
			n1 = compress_with(&a, in, in_len, out1, sizeof(out1));
			n2 = compress_with(&b, in, in_len, out2, sizeof(out2));
			CHECK(n1 == n2 && memcmp(out1, out2, n1) == 0);
			CHECK(a.adler == b.adler);
			CHECK(deflateReset(&a) == Z_OK && deflateReset(&b) == Z_OK);
			if (dict_len > 0) {
				CHECK(deflateSetDictionary(&a, dict, (uInt)dict_len) == Z_OK);
				CHECK(deflateSetDictionary(&b, dict, (uInt)dict_len) == Z_OK);
			}
		}
		deflateEnd(&a);
		deflateEnd(&b);
	}
}

int main(void)
{
	test_init();
	test_copies_equal_fresh();
	return test_exit();
}
