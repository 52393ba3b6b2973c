/*
 * libFuzzer target: every decoder of LMDB records and keys and of segment
 * and blob headers, store dictionary records and files (storage/lmbox-format.h).  The first input byte picks the
 * decoder, the rest is the record.  A record that decodes must re-encode to
 * something that decodes to the same values: decoders and encoders agree.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmbox-format.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void fuzz_folder(const uint8_t *data, size_t size)
{
	struct lmbox_folder_info a, b;
	unsigned char *buf;

	if (lmbox_folder_decode(data, size, &a) < 0)
		return;
	buf = malloc(lmbox_folder_encoded_size(&a));
	CHECK(buf != NULL);
	lmbox_folder_encode(&a, buf);
	CHECK(lmbox_folder_decode(buf, lmbox_folder_encoded_size(&a), &b) == 0);
	CHECK(a.uidvalidity == b.uidvalidity && a.next_uid == b.next_uid &&
	      a.count == b.count && a.vsize_total == b.vsize_total &&
	      strcmp(a.name, b.name) == 0);
	free(buf);
}

static void fuzz_msg(const uint8_t *data, size_t size)
{
	struct lmbox_msg_meta a, b;
	unsigned char *buf;
	size_t len;
	uint8_t guid[LMBOX_GUID_SIZE];
	int gret = lmbox_msg_decode_guid(data, size, guid);

	if (lmbox_msg_decode(data, size, &a) < 0)
		return;
	/* every record the full decoder takes, the GUID decoder takes too,
	   with the same GUID */
	CHECK(gret == 0 && memcmp(guid, a.guid, LMBOX_GUID_SIZE) == 0);
	/* the decoder points into its input: walk everything it gave us */
	CHECK(a.uidl != NULL);
	(void)strlen(a.uidl);
	for (const char *kw = lmbox_meta_next_keyword(&a, NULL); kw != NULL;
	     kw = lmbox_meta_next_keyword(&a, kw))
		(void)strlen(kw);
	len = lmbox_msg_encoded_size(&a);
	buf = malloc(len);
	CHECK(buf != NULL);
	lmbox_msg_encode(&a, buf);
	CHECK(lmbox_msg_decode(buf, len, &b) == 0);
	CHECK(a.phys_size == b.phys_size && a.virt_size == b.virt_size &&
	      a.stored_size == b.stored_size && a.checksum == b.checksum &&
	      a.kw_count == b.kw_count && strcmp(a.uidl, b.uidl) == 0);
	free(buf);
}

static void fuzz_fixed(uint8_t which, const uint8_t *data, size_t size)
{
	uint32_t a32, b32;
	uint64_t a64;

	switch (which) {
	case 2: {
		struct lmbox_seg_rec r;
		unsigned char buf[LMBOX_SEG_REC_SIZE];
		if (lmbox_seg_rec_decode(data, size, &r) == 0) {
			lmbox_seg_rec_encode(&r, buf);
			CHECK(lmbox_seg_rec_decode(buf, sizeof(buf), &r) == 0);
		}
		break;
	}
	case 3: {
		struct lmbox_reclaim_rec r;
		unsigned char buf[LMBOX_RECLAIM_REC_SIZE];
		if (lmbox_reclaim_rec_decode(data, size, &r) == 0) {
			lmbox_reclaim_rec_encode(&r, buf);
			CHECK(lmbox_reclaim_rec_decode(buf, sizeof(buf), &r) == 0);
		}
		break;
	}
	case 4: {
		struct lmbox_blob_hdr h;
		unsigned char buf[LMBOX_BLOB_HDR_SIZE];
		if (lmbox_blob_hdr_decode(data, size, &h) == 0) {
			lmbox_blob_hdr_encode(&h, buf);
			CHECK(lmbox_blob_hdr_decode(buf, sizeof(buf), &h) == 0);
		}
		break;
	}
	case 5: {
		struct lmbox_seg_hdr h;
		unsigned char buf[LMBOX_SEG_HDR_SIZE];
		if (lmbox_seg_hdr_decode(data, size, &h) == 0) {
			lmbox_seg_hdr_encode(&h, buf);
			CHECK(lmbox_seg_hdr_decode(buf, sizeof(buf), &h) == 0);
		}
		break;
	}
	case 6:
		if (lmbox_pending_rec_decode(data, size) == 0) {
			unsigned char buf[LMBOX_PENDING_REC_SIZE];

			lmbox_pending_rec_encode(buf);
			CHECK(size == sizeof(buf) && memcmp(buf, data, size) == 0);
		}
		(void)lmbox_msg_key_decode(data, size, &a32, &b32);
		(void)lmbox_u32_key_decode(data, size, &a32);
		(void)lmbox_reclaim_key_decode(data, size, &a32, &a64);
		(void)lmbox_u32_decode(data, size, &a32);
		(void)lmbox_u64_decode(data, size, &a64);
		{
			/* the word-at-a-time check answers as the byte rule */
			int valid = size >= 1 && size <= LMBOX_MAX_UIDL_LEN;

			for (size_t i = 0; i < size && valid; i++)
				valid = data[i] >= 0x21 && data[i] <= 0x7e;
			CHECK(lmbox_uidl_valid((const char *)data, size) == valid);
		}
		break;
	case 7: {
		/* store dictionary record; its id in the first 4 bytes */
		const unsigned char *d, *d2;
		size_t n, n2;
		bool damaged;
		unsigned char *buf;

		if (size < 4)
			break;
		a32 = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
			(uint32_t)data[2] << 8 | data[3];
		/* the same bytes as a dictionary file (DIR/dict/XXXXXXXX.dict) */
		if (lmbox_dict_file_decode(data + 4, size - 4, a32, &d, &n) == 0) {
			CHECK(n > 0 && n <= LMBOX_SDICT_MAX && d >= data + 4 &&
			      d + n == data + size);
			buf = malloc(lmbox_dict_file_size(n));
			CHECK(buf != NULL);
			lmbox_dict_file_encode(d, n, a32, buf);
			CHECK(lmbox_dict_file_size(n) == size - 4 &&
			      memcmp(buf, data + 4, size - 4) == 0);
			CHECK(lmbox_dict_file_decode(buf, lmbox_dict_file_size(n), a32,
						     &d2, &n2) == 0);
			CHECK(n2 == n && memcmp(d2, d, n) == 0);
			free(buf);
		}
		if (lmbox_dict_rec_decode(data + 4, size - 4, a32, &d, &n, &damaged) < 0)
			break;
		CHECK(n > 0 && n <= LMBOX_SDICT_MAX && d >= data + 4 && d + n <= data + size);
		buf = malloc(lmbox_dict_rec_size(n));
		CHECK(buf != NULL);
		lmbox_dict_rec_encode(d, n, buf);
		CHECK(lmbox_dict_rec_decode(buf, lmbox_dict_rec_size(n), a32, &d2, &n2, &damaged) == 0);
		CHECK(n2 == n && memcmp(d2, d, n) == 0 && !damaged);
		free(buf);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t which;
	uint8_t *copy;

	if (size == 0)
		return 0;
	which = data[0] % 8;
	/* an exact-size heap copy, so ASan sees any read past the record */
	copy = malloc(size - 1 + 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	switch (which) {
	case 0: fuzz_folder(copy, size - 1); break;
	case 1: fuzz_msg(copy, size - 1); break;
	default: fuzz_fixed(which, copy, size - 1); break;
	}
	free(copy);
	return 0;
}
