/*
 * test-format: every on-disk record encodes and decodes back to itself,
 * and every decoder, fed truncated, bit-flipped or random input, returns
 * 0 or LMBOX_ERR_CORRUPT without reading out of bounds (run it under
 * ASan).  A small stand-in for the libFuzzer targets in tests/fuzz.
 */
#include <stdbool.h>
#include <zlib.h>

#include "lmbox-format.h"
#include "test-common.h"

typedef int decode_fn(const void *buf, size_t len);

static int dec_msg(const void *buf, size_t len)
{
	struct lmbox_msg_meta meta;
	int ret = lmbox_msg_decode(buf, len, &meta);

	if (ret == 0) {
		/* what the decoder accepted must be usable */
		CHECK(strlen(meta.uidl) >= 1 && strlen(meta.uidl) <= LMBOX_MAX_UIDL_LEN);
		for (const char *kw = lmbox_meta_next_keyword(&meta, NULL); kw != NULL;
		     kw = lmbox_meta_next_keyword(&meta, kw))
			CHECK(kw[0] != '\0');
	}
	return ret;
}
static int dec_folder(const void *buf, size_t len)
{ struct lmbox_folder_info info; return lmbox_folder_decode(buf, len, &info); }
static int dec_seg(const void *buf, size_t len)
{ struct lmbox_seg_rec rec; return lmbox_seg_rec_decode(buf, len, &rec); }
static int dec_reclaim(const void *buf, size_t len)
{ struct lmbox_reclaim_rec rec; return lmbox_reclaim_rec_decode(buf, len, &rec); }
/* the store dictionary record under test: its id */
static uint32_t dict_id;

static int dec_dict(const void *buf, size_t len)
{
	const unsigned char *d;
	size_t n;
	bool damaged;

	return lmbox_dict_rec_decode(buf, len, dict_id, &d, &n, &damaged);
}

static int dec_blob(const void *buf, size_t len)
{ struct lmbox_blob_hdr hdr; return lmbox_blob_hdr_decode(buf, len, &hdr); }
static int dec_seghdr(const void *buf, size_t len)
{ struct lmbox_seg_hdr hdr; return lmbox_seg_hdr_decode(buf, len, &hdr); }
static int dec_msgkey(const void *buf, size_t len)
{ uint32_t a, b; return lmbox_msg_key_decode(buf, len, &a, &b); }
static int dec_reclaimkey(const void *buf, size_t len)
{ uint32_t a; uint64_t b; return lmbox_reclaim_key_decode(buf, len, &a, &b); }

/* Every prefix, every single-bit flip, and random bytes. */
static void torture(const char *name, decode_fn *fn, const unsigned char *good, size_t len)
{
	unsigned char *buf;
	uint32_t x = 99;

	CHECK(fn(good, len) == 0);
	for (size_t n = 0; n < len; n++) {
		/* exact-size heap copies so ASan sees any overread */
		buf = malloc(n + 1);
		memcpy(buf, good, n);
		CHECK(fn(buf, n) == LMBOX_ERR_CORRUPT);
		free(buf);
	}
	buf = malloc(len);
	for (size_t bit = 0; bit < len * 8; bit++) {
		int ret;

		memcpy(buf, good, len);
		buf[bit / 8] ^= (unsigned char)(1 << (bit % 8));
		ret = fn(buf, len);
		CHECK(ret == 0 || ret == LMBOX_ERR_CORRUPT);
	}
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)(round % (int)(len + 8));
		unsigned char *r = malloc(n + 1);
		int ret;

		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245 + 12345;
			r[i] = (unsigned char)(x >> 16);
		}
		ret = fn(r, n);
		CHECK(ret == 0 || ret == LMBOX_ERR_CORRUPT);
		free(r);
	}
	free(buf);
	(void)name;
}

/* Store dictionary records: both copies checked, either one will do, an
 * id that is not the bytes' Adler-32 is refused. */
static void test_dict_rec(void)
{
	static const char dict[] = "Subject: lunch\r\nFrom: alice\r\nsome words";
	size_t len = sizeof(dict) - 1, n;
	unsigned char *buf = malloc(lmbox_dict_rec_size(len));
	const unsigned char *d;
	bool damaged;

	CHECK(lmbox_dict_rec_size(len) == 16 + 2 * len);
	dict_id = (uint32_t)adler32(adler32(0, NULL, 0), (const Bytef *)dict, (uInt)len);
	lmbox_dict_rec_encode(dict, len, buf);
	CHECK(lmbox_dict_rec_decode(buf, lmbox_dict_rec_size(len), dict_id, &d, &n, &damaged) == 0);
	CHECK(n == len && memcmp(d, dict, len) == 0 && !damaged);
	torture("dict", dec_dict, buf, lmbox_dict_rec_size(len));
	/* a damaged first copy: the second one is read */
	buf[16] ^= 0x40;
	CHECK(lmbox_dict_rec_decode(buf, lmbox_dict_rec_size(len), dict_id, &d, &n, &damaged) == 0);
	CHECK(n == len && memcmp(d, dict, len) == 0 && damaged && d == buf + 16 + len);
	/* both damaged */
	buf[16 + len + 3] ^= 0x01;
	CHECK(lmbox_dict_rec_decode(buf, lmbox_dict_rec_size(len), dict_id, &d, &n, &damaged) ==
	      LMBOX_ERR_CORRUPT);
	buf[16] ^= 0x40;
	buf[16 + len + 3] ^= 0x01;
	/* another id */
	CHECK(lmbox_dict_rec_decode(buf, lmbox_dict_rec_size(len), dict_id ^ 1, &d, &n, &damaged) ==
	      LMBOX_ERR_CORRUPT);
	free(buf);
}

static int dec_dict_file(const void *buf, size_t len)
{
	const unsigned char *d;
	size_t n;

	return lmbox_dict_file_decode(buf, len, dict_id, &d, &n);
}

/* Store dictionary files: every flipped bit, a short or long file and
 * another id are refused (the file has one copy). */
static void test_dict_file(void)
{
	static const char dict[] = "Subject: lunch\r\nFrom: alice\r\nsome words";
	size_t len = sizeof(dict) - 1, size = lmbox_dict_file_size(len), n;
	unsigned char *buf = malloc(size + 1);
	const unsigned char *d;

	CHECK(size == 24 + len);
	dict_id = (uint32_t)adler32(adler32(0, NULL, 0), (const Bytef *)dict, (uInt)len);
	lmbox_dict_file_encode(dict, len, dict_id, buf);
	CHECK(memcmp(buf, "LMBXDICT", 8) == 0);
	CHECK(lmbox_dict_file_decode(buf, size, dict_id, &d, &n) == 0);
	CHECK(n == len && memcmp(d, dict, len) == 0 && d == buf + 24);
	torture("dictfile", dec_dict_file, buf, size);
	for (size_t bit = 0; bit < size * 8; bit++) {
		buf[bit / 8] ^= (unsigned char)(1 << (bit % 8));
		CHECK(lmbox_dict_file_decode(buf, size, dict_id, &d, &n) == LMBOX_ERR_CORRUPT);
		buf[bit / 8] ^= (unsigned char)(1 << (bit % 8));
	}
	buf[size] = 0;
	CHECK(lmbox_dict_file_decode(buf, size + 1, dict_id, &d, &n) == LMBOX_ERR_CORRUPT);
	CHECK(lmbox_dict_file_decode(buf, size, dict_id ^ 1, &d, &n) == LMBOX_ERR_CORRUPT);
	free(buf);
}

int main(void)
{
	struct lmbox_msg_meta meta, out;
	struct lmbox_folder_info info, info2;
	struct lmbox_seg_rec seg = { LMBOX_SEG_SEALED, 3, 1000, 500 }, seg2;
	struct lmbox_reclaim_rec rr = { LMBOX_RECLAIM_PUNCH, 4096 }, rr2;
	struct lmbox_blob_hdr bh = { LMBOX_CODEC_DEFLATE, 1234, 567, 0xdeadbeef }, bh2;
	struct lmbox_seg_hdr sh = { LMBOX_SEG_VERSION, 42, 1700000000 }, sh2;
	unsigned char buf[1024], sbuf[LMBOX_SEG_REC_SIZE], rbuf[LMBOX_RECLAIM_REC_SIZE];
	unsigned char bbuf[LMBOX_BLOB_HDR_SIZE], hbuf[LMBOX_SEG_HDR_SIZE], key[12];
	size_t len;

	memset(&meta, 0, sizeof(meta));
	meta.flags = LMBOX_FLAG_SEEN;
	meta.codec = LMBOX_CODEC_DEFLATE;
	meta.pop3_order = 9;
	meta.received_date = -5;
	meta.save_date = 1700000000;
	meta.pop3_first_retr = 1700000001;
	meta.phys_size = 1000;
	meta.virt_size = 1020;
	meta.stored_size = 400;
	meta.checksum = 0x12345678;
	memset(meta.guid, 7, sizeof(meta.guid));
	meta.seg_id = 3;
	meta.seg_offset = 64;
	meta.uidl = "UIDL-1";
	meta.keywords = "kw1\0$kw2";
	meta.kw_count = 2;
	len = lmbox_msg_encoded_size(&meta);
	CHECK(len == LMBOX_MSG_REC_FIXED + 7 + 9);
	lmbox_msg_encode(&meta, buf);
	CHECK(lmbox_msg_decode(buf, len, &out) == 0);
	CHECK(out.flags == meta.flags && out.codec == meta.codec && out.pop3_order == 9);
	CHECK(out.received_date == -5 && out.save_date == 1700000000);
	CHECK(out.pop3_first_retr == 1700000001 && out.phys_size == 1000);
	CHECK(out.virt_size == 1020 && out.stored_size == 400 && out.checksum == 0x12345678);
	CHECK(out.seg_id == 3 && out.seg_offset == 64);
	CHECK(memcmp(out.guid, meta.guid, LMBOX_GUID_SIZE) == 0);
	CHECK(strcmp(out.uidl, "UIDL-1") == 0 && out.kw_count == 2);
	CHECK(memcmp(out.keywords, "kw1\0$kw2", 9) == 0);
	torture("msg", dec_msg, buf, len);

	memset(&info, 0, sizeof(info));
	info.id = 5;
	info.uidvalidity = 77;
	info.next_uid = 10;
	info.count = 3;
	info.vsize_total = 1ULL << 40;
	info.psize_total = 99;
	info.change_counter = 12;
	memset(info.guid, 1, sizeof(info.guid));
	strcpy(info.name, "INBOX/Sub");
	len = lmbox_folder_encoded_size(&info);
	lmbox_folder_encode(&info, buf);
	CHECK(lmbox_folder_decode(buf, len, &info2) == 0);
	CHECK(memcmp(&info, &info2, sizeof(info)) == 0);
	torture("folder", dec_folder, buf, len);

	lmbox_seg_rec_encode(&seg, sbuf);
	CHECK(lmbox_seg_rec_decode(sbuf, sizeof(sbuf), &seg2) == 0);
	CHECK(seg2.flags == seg.flags && seg2.live_count == 3 && seg2.tail == 1000 &&
	      seg2.live_bytes == 500);
	torture("seg", dec_seg, sbuf, sizeof(sbuf));

	lmbox_reclaim_rec_encode(&rr, rbuf);
	CHECK(lmbox_reclaim_rec_decode(rbuf, sizeof(rbuf), &rr2) == 0);
	CHECK(rr2.kind == rr.kind && rr2.len == rr.len);
	torture("reclaim", dec_reclaim, rbuf, sizeof(rbuf));

	lmbox_blob_hdr_encode(&bh, bbuf);
	CHECK(lmbox_blob_hdr_decode(bbuf, sizeof(bbuf), &bh2) == 0);
	CHECK(bh2.codec == bh.codec && bh2.phys_size == 1234 && bh2.stored_size == 567 &&
	      bh2.checksum == 0xdeadbeef);
	torture("blob", dec_blob, bbuf, sizeof(bbuf));

	/* codecs 0-4 are accepted in blob headers and message records, 5+ not */
	for (unsigned int c = 0; c <= 255; c++) {
		struct lmbox_blob_hdr bh3 = bh;
		struct lmbox_msg_meta m3 = meta;
		unsigned char mbuf[1024];
		bool known = c <= LMBOX_CODEC_DEFLATE_B64_SDICT;

		bh3.codec = (uint8_t)c;
		lmbox_blob_hdr_encode(&bh3, bbuf);
		CHECK((lmbox_blob_hdr_decode(bbuf, sizeof(bbuf), &bh2) == 0) == known);
		CHECK(!known || bh2.codec == c);
		m3.codec = (uint8_t)c;
		if (c == LMBOX_CODEC_RAW)
			m3.stored_size = m3.phys_size;
		lmbox_msg_encode(&m3, mbuf);
		CHECK((lmbox_msg_decode(mbuf, lmbox_msg_encoded_size(&m3), &out) == 0) == known);
		CHECK(!known || out.codec == c);
	}
	CHECK(LMBOX_CODEC_MAX == 4 && LMBOX_CODEC_DEFLATE_DICT1 == 2 &&
	      LMBOX_CODEC_DEFLATE_B64 == 3 && LMBOX_CODEC_DEFLATE_B64_SDICT == 4);
	test_dict_rec();
	test_dict_file();

	lmbox_seg_hdr_encode(&sh, hbuf);
	CHECK(lmbox_seg_hdr_decode(hbuf, sizeof(hbuf), &sh2) == 0);
	CHECK(sh2.seg_id == 42 && sh2.created == 1700000000);
	torture("seghdr", dec_seghdr, hbuf, sizeof(hbuf));

	lmbox_msg_key_encode(key, 1, 2);
	torture("msgkey", dec_msgkey, key, 8);
	lmbox_reclaim_key_encode(key, 1, 4096);
	torture("reclaimkey", dec_reclaimkey, key, 12);

	/* keys sort numerically */
	{
		unsigned char a[8], b[8];
		lmbox_msg_key_encode(a, 1, 255);
		lmbox_msg_key_encode(b, 1, 256);
		CHECK(memcmp(a, b, 8) < 0);
	}
	CHECK(lmbox_uidl_valid("abc", 3));
	CHECK(!lmbox_uidl_valid("a c", 3));
	CHECK(!lmbox_uidl_valid("", 0));
	CHECK(!lmbox_uidl_valid("\x7f", 1));
	/* the word-at-a-time check against the byte rule: every length, every
	   position, every byte value in a UIDL of otherwise valid bytes */
	{
		char u[LMBOX_MAX_UIDL_LEN + 1];
		unsigned int bad = 0;

		for (size_t len = 1; len <= LMBOX_MAX_UIDL_LEN + 1; len++) {
			for (size_t i = 0; i < len; i++)
				u[i] = (char)(0x21 + (i * 7) % 94);
			if (lmbox_uidl_valid(u, len) != (len <= LMBOX_MAX_UIDL_LEN))
				bad++;
			for (size_t pos = 0; pos < len; pos++) {
				char keep = u[pos];

				for (unsigned int c = 0; c < 256; c++) {
					u[pos] = (char)c;
					if (lmbox_uidl_valid(u, len) !=
					    (len <= LMBOX_MAX_UIDL_LEN && c >= 0x21 && c <= 0x7e))
						bad++;
				}
				u[pos] = keep;
			}
		}
		CHECK(bad == 0);
	}
	return test_exit();
}
