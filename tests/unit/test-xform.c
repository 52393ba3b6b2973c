/*
 * test-xform.c: codec 3, the base64 transform before deflate
 * (storage/lmbox-xform.c).  Odd inputs round-trip exactly through the
 * writer and the reader, fed and drained in pieces of every size; the
 * writer replaces exactly the canonical base64 runs; corrupt streams are
 * refused; and through a store, messages with base64 get codec 3, the
 * others codec 2, and all read back byte for byte.
 */
#include <zlib.h>

#include "test-common.h"
#include "lmbox-private.h"

struct buf {
	unsigned char *data;
	size_t len, alloc;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	if (b->len + len > b->alloc) {
		b->alloc = (b->len + len) * 2 + 64;
		b->data = realloc(b->data, b->alloc);
		if (b->data == NULL)
			abort();
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

/* memcmp that takes NULL for empty buffers */
static bool same(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static uint64_t rng_state = 88172645463325252ULL;

static uint32_t rnd(void)
{
	return test_xorshift(&rng_state);
}

/* base64 of n random bytes in lines of l chars ending in eol */
static void add_b64(struct buf *b, size_t n, unsigned int l, const char *eol)
{
	static const char chars[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char in[3];
	char line[2048];
	size_t pos = 0;

	while (n > 0) {
		size_t k = n < 3 ? n : 3;
		uint32_t v;

		for (size_t i = 0; i < 3; i++)
			in[i] = i < k ? (unsigned char)rnd() : 0;
		v = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
		line[pos++] = chars[v >> 18];
		line[pos++] = chars[(v >> 12) & 63];
		line[pos++] = k > 1 ? chars[(v >> 6) & 63] : '=';
		line[pos++] = k > 2 ? chars[v & 63] : '=';
		n -= k;
		if (pos == l || n == 0) {
			buf_add(b, line, pos);
			buf_str(b, eol);
			pos = 0;
		}
	}
}

static int emit_cb(void *ctx, const void *data, size_t size)
{
	buf_add(ctx, data, size);
	return 0;
}

/* The transformed stream of msg, written in pieces of `piece` bytes (0:
 * random sizes); *plain_r as lmbox_xf_enc_finish() says. */
static struct buf transform(const struct buf *msg, size_t piece, bool allow_plain,
			    bool *plain_r)
{
	struct buf out = { NULL, 0, 0 };
	struct lmbox_xf_enc *enc = lmbox_xf_enc_new(emit_cb, &out);
	size_t pos = 0;

	CHECK(enc != NULL);
	while (pos < msg->len) {
		size_t n = piece != 0 ? piece : 1 + rnd() % 3000;

		if (n > msg->len - pos)
			n = msg->len - pos;
		CHECK(lmbox_xf_enc_write(enc, msg->data + pos, n) == 0);
		pos += n;
	}
	CHECK(lmbox_xf_enc_finish(enc, allow_plain, plain_r) == 0);
	lmbox_xf_enc_free(&enc);
	CHECK(enc == NULL);
	return out;
}

/* Decodes xf in input pieces of in_piece and output pieces of out_piece
 * (0: random); 0 and the bytes in *out, or -1. */
static int untransform(const struct buf *xf, uint64_t size, size_t in_piece,
		       size_t out_piece, struct buf *out)
{
	struct lmbox_xf_dec dec;
	static unsigned char obuf[65536];
	size_t pos = 0;

	out->len = 0;
	lmbox_xf_dec_init(&dec, size);
	for (;;) {
		size_t n = in_piece != 0 ? in_piece : 1 + rnd() % 2000;
		const unsigned char *in = xf->data + pos;
		size_t in_len = n < xf->len - pos ? n : xf->len - pos;
		ssize_t got;

		pos += in_len;
		do {
			size_t o = out_piece != 0 ? out_piece : 1 + rnd() % sizeof(obuf);

			got = lmbox_xf_dec_run(&dec, &in, &in_len, obuf, o);
			if (got < 0)
				return -1;
			buf_add(out, obuf, (size_t)got);
		} while (got > 0);
		CHECK(in_len == 0);
		if (pos == xf->len)
			break;
	}
	return lmbox_xf_dec_end(&dec);
}

/* Record types in a transformed stream: counts of literal and base64. */
static void count_records(const struct buf *xf, unsigned int *lit_r, unsigned int *b64_r)
{
	size_t pos = 0;

	*lit_r = *b64_r = 0;
	while (pos + LMBOX_XF_HDR <= xf->len) {
		const unsigned char *h = xf->data + pos;
		uint32_t n = (uint32_t)h[2] | (uint32_t)h[3] << 8 | (uint32_t)h[4] << 16 |
			(uint32_t)h[5] << 24;

		if (h[0] == LMBOX_XF_LITERAL)
			(*lit_r)++;
		else
			(*b64_r)++;
		pos += LMBOX_XF_HDR + n;
	}
	CHECK(pos == xf->len);
}

/* msg round-trips in every way; it has b64 records iff want_b64 */
static void roundtrip(const char *name, const struct buf *msg, int want_b64)
{
	static const size_t pieces[] = { 1, 3, 77, 4096, 65536, 0 };
	unsigned int lit, b64;
	struct buf out = { NULL, 0, 0 };
	bool plain;
	int fails = test_failures;

	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		struct buf xf = transform(msg, pieces[i], false, &plain);

		CHECK(!plain);
		count_records(&xf, &lit, &b64);
		if (want_b64 >= 0)
			CHECK((b64 > 0) == (want_b64 > 0));
		for (size_t j = 0; j < sizeof(pieces) / sizeof(pieces[0]); j++) {
			CHECK(untransform(&xf, msg->len, pieces[j], pieces[(i + j) % 6], &out) == 0);
			CHECK(same(out.data, out.len, msg->data, msg->len));
		}
		/* a size other than the message's is refused */
		CHECK(untransform(&xf, msg->len + 1, 0, 0, &out) < 0);
		if (msg->len > 0)
			CHECK(untransform(&xf, msg->len - 1, 0, 0, &out) < 0);
		free(xf.data);

		/* allowed to, a message without base64 goes out plain */
		xf = transform(msg, pieces[i], true, &plain);
		if (plain)
			CHECK(same(xf.data, xf.len, msg->data, msg->len));
		if (want_b64 > 0 || msg->len > LMBOX_XF_CHUNK)
			CHECK(!plain);
		free(xf.data);
	}
	free(out.data);
	if (test_failures != fails)
		fprintf(stderr, "  in round trip \"%s\"\n", name);
}

static const char hdr[] = "From: a@example.org\r\nSubject: att\r\n"
	"Content-Transfer-Encoding: base64\r\n\r\n";

static void test_roundtrips(void)
{
	static const unsigned int lens[] = { 64, 72, 76, 16, 1020, 4 };
	struct buf m = { NULL, 0, 0 };
	char line[64];

	/* nothing, text, binary junk */
	roundtrip("empty", &m, 0);
	buf_str(&m, "x");
	roundtrip("x", &m, 0);
	m.len = 0;
	buf_str(&m, hdr);
	buf_str(&m, "Hello world\r\n");
	roundtrip("text", &m, 0);
	m.len = 0;
	for (unsigned int i = 0; i < 200000; i++) {
		unsigned char c = (unsigned char)rnd();
		buf_add(&m, &c, 1);
	}
	roundtrip("binary junk", &m, -1);

	/* every line length, LF and CRLF, last line 1..L chars (every
	   padding) */
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		unsigned int l = lens[li], lb = l / 4 * 3;

		for (unsigned int eol = 0; eol < 2; eol++) {
			for (unsigned int last = 1; last <= lb; last += (l > 100 ? 37 : 1)) {
				m.len = 0;
				buf_str(&m, hdr);
				add_b64(&m, lb * 3 + last, l, eol ? "\r\n" : "\n");
				buf_str(&m, "--bnd--\r\n");
				snprintf(line, sizeof(line), "L=%u eol=%u last=%u", l, eol, last);
				roundtrip(line, &m, l >= LMBOX_XF_MIN_L ? 1 : 0);
			}
		}
	}

	/* runs at the very start and the very end, no text around */
	m.len = 0;
	add_b64(&m, 5000, 76, "\r\n");
	roundtrip("run alone", &m, 1);
	m.len = 0;
	buf_str(&m, hdr);
	add_b64(&m, 5001, 76, "\n");
	roundtrip("run at end", &m, 1);
	/* ... and one whose last line has no LF: that line stays literal */
	m.len -= 1;
	roundtrip("run at end, no final LF", &m, 1);

	/* many small runs (2 lines and up) between text */
	m.len = 0;
	for (unsigned int i = 0; i < 300; i++) {
		buf_str(&m, "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n");
		add_b64(&m, 57 + rnd() % 200, 76, "\r\n");
	}
	roundtrip("many small runs", &m, 1);

	/* a 5 MB run */
	m.len = 0;
	buf_str(&m, hdr);
	add_b64(&m, 5 * 1024 * 1024, 76, "\r\n");
	buf_str(&m, "\r\n--bnd--\r\n");
	roundtrip("5 MB run", &m, 1);
	free(m.data);
}

/* Lines that re-encoding would not reproduce stay literal. */
static void test_noncanonical(void)
{
	static const char *const cases[] = {
		/* stray bits in the last quantum (QR== decodes to "A", which
		   encodes as QQ==) */
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
		"QR==\r\n",
		/* padding in the middle, a '=' line, a space */
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
		"QUJD=EVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n",
		"QUJDREVG R0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n",
		/* a line shorter than 16 chars, a length not a multiple of 4 */
		"QUJDREVGR0hJ\r\nQUJDREVGR0hJ\r\nQUJDREVGR0hJ\r\n",
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxA\r\n"
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxA\r\n",
		/* a single line is not a run */
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n",
		/* EOL changes: two one-line runs */
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\n"
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n",
		/* a CR before the CRLF */
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\r\n"
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\r\n",
	};
	struct buf m = { NULL, 0, 0 };

	for (size_t i = 1; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m.len = 0;
		buf_str(&m, cases[i]);
		roundtrip(cases[i], &m, 0);
	}
	/* 2 full lines then a non-canonical last line: the 2 lines are a
	   run, the last stays literal */
	m.len = 0;
	buf_str(&m, cases[0]);
	roundtrip("canonical run, bad last line", &m, 1);
	m.len = 0;
	for (unsigned int i = 0; i < 3000; i++)
		buf_str(&m, "A");
	buf_str(&m, "\r\n");
	roundtrip("long line", &m, 0);
	free(m.data);
}

/* Hand-made corrupt streams are refused, never over-produce. */
static void test_corrupt_streams(void)
{
	static const struct {
		const char *what;
		unsigned char data[16];
		size_t len;
		uint64_t size;
	} cases[] = {
		{ "unknown type", { 4, 0, 1, 0, 0, 0, 'x' }, 7, 1 },
		{ "type 0", { 0, 0, 1, 0, 0, 0, 'x' }, 7, 1 },
		{ "literal with q", { 1, 1, 1, 0, 0, 0, 'x' }, 7, 1 },
		{ "empty literal", { 1, 0, 0, 0, 0, 0 }, 6, 0 },
		{ "base64 q 0", { 2, 0, 3, 0, 0, 0, 1, 2, 3 }, 9, 5 },
		{ "too long literal", { 1, 0, 2, 0, 0, 0, 'x', 'y' }, 8, 1 },
		{ "huge literal", { 1, 0, 0xff, 0xff, 0xff, 0xff }, 6, 100 },
		{ "huge base64", { 3, 255, 0xff, 0xff, 0xff, 0xff }, 6, 1ULL << 40 },
		{ "base64 over size", { 2, 4, 3, 0, 0, 0, 1, 2, 3 }, 9, 4 },
		{ "truncated header", { 1, 0, 1 }, 3, 1 },
		{ "truncated payload", { 1, 0, 5, 0, 0, 0, 'x' }, 7, 5 },
		{ "truncated base64", { 3, 4, 12, 0, 0, 0, 1, 2, 3 }, 9, 18 },
	};
	struct buf out = { NULL, 0, 0 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf xf = { (unsigned char *)cases[i].data, cases[i].len, 0 };

		if (untransform(&xf, cases[i].size, 0, 0, &out) == 0) {
			fprintf(stderr, "corrupt stream \"%s\" accepted\n", cases[i].what);
			test_failures++;
		}
		CHECK(out.len <= cases[i].size);
	}
	/* and a good one: 3 bytes as one CRLF line of 4 chars */
	{
		unsigned char good[] = { 3, 1, 3, 0, 0, 0, 'a', 'b', 'c' };
		struct buf xf = { good, sizeof(good), 0 };

		CHECK(untransform(&xf, 6, 0, 0, &out) == 0);
		CHECK(out.len == 6 && memcmp(out.data, "YWJj\r\n", 6) == 0);
	}
	free(out.data);
}

/* Through a store: codec 3 for base64 mail, 2 for the rest; exact bytes
 * read back through small reads; smaller than codec 2. */
static void test_store(void)
{
	struct lmbox_store *store = test_open("xform", LMBOX_OPEN_CREATE);
	struct lmbox_txn *txn;
	struct lmbox_append *append;
	struct lmbox_commit_result result;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct buf m = { NULL, 0, 0 }, got = { NULL, 0, 0 };
	uint32_t folder, uids[3];
	uint64_t stored[3];
	unsigned char rbuf[100];

	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	buf_str(&m, hdr);
	add_b64(&m, 300000, 76, "\r\n");
	buf_str(&m, "\r\n--bnd--\r\n");
	for (int i = 0; i < 3; i++) {
		/* default (3), forced codec 2, and a text message */
		lmbox_append_force_codec = i == 1 ? LMBOX_CODEC_DEFLATE_DICT1 : 0;
		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		CHECK_OK(store, lmbox_append_begin(txn, folder, NULL, &append));
		if (i < 2)
			CHECK_OK(store, lmbox_append_write(append, m.data, m.len));
		else
			CHECK_OK(store, lmbox_append_write(append, hdr, strlen(hdr)));
		CHECK(lmbox_append_finish(&append) == 0);
		lmbox_append_force_codec = 0;
		CHECK_OK(store, lmbox_txn_commit(&txn, &result));
		uids[i] = result.uids[0];
		lmbox_commit_result_free(&result);
	}
	CHECK_OK(store, lmbox_reader_begin(store, &reader));
	for (int i = 0; i < 3; i++) {
		struct lmbox_body *body;
		ssize_t n;
		size_t k = 0;

		CHECK_OK(store, lmbox_reader_msg(reader, folder, uids[i], &meta));
		CHECK(meta.codec == (i == 0 ? LMBOX_CODEC_DEFLATE_B64 : LMBOX_CODEC_DEFLATE_DICT1));
		stored[i] = meta.stored_size;
		got.len = 0;
		CHECK_OK(store, lmbox_body_open(store, &meta, &body));
		while ((n = lmbox_body_read(body, rbuf, 1 + k++ % sizeof(rbuf))) > 0)
			buf_add(&got, rbuf, (size_t)n);
		CHECK_OK(store, n);
		lmbox_body_close(&body);
		if (i < 2)
			CHECK(got.len == m.len && memcmp(got.data, m.data, m.len) == 0);
		else
			CHECK(got.len == strlen(hdr) && memcmp(got.data, hdr, got.len) == 0);
	}
	lmbox_reader_end(&reader);
	/* random bytes: 0.73 of the base64 instead of about 0.76 */
	CHECK(stored[0] * 100 < stored[1] * 97);
	CHECK(stored[0] < m.len * 3 / 4);
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);
	lmbox_store_close(&store);
	free(m.data);
	free(got.data);
}

int main(void)
{
	test_init();
	test_roundtrips();
	test_noncanonical();
	test_corrupt_streams();
	test_store();
	return test_exit();
}
