/*
 * Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/): valid
 * records of each kind and valid blobs, raw, deflated and deflated with
 * dictionary 1 (codec 2).  Run by hand:
 *   cc -D_GNU_SOURCE -Istorage tests/fuzz/make-seeds.c storage/lmbox-format.c \
 *      storage/lmbox-error.c storage/lmbox-dict.c -llmdb -lz -o /tmp/make-seeds && \
 *      /tmp/make-seeds tests/fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lmbox-format.h"

static void put(const char *dir, const char *name, unsigned char prefix,
		const void *data, size_t size)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL) { perror(path); exit(1); }
	if (prefix != 0xff)
		fputc(prefix, f);
	fwrite(data, 1, size, f);
	fclose(f);
}

static void blob(const char *dir, const char *name, const char *msg, int codec)
{
	struct lmbox_blob_hdr hdr = { 0 };
	unsigned char buf[4096];
	uLongf clen = sizeof(buf) - LMBOX_BLOB_HDR_SIZE;
	size_t len = strlen(msg);

	if (codec == LMBOX_CODEC_DEFLATE) {
		compress2(buf + LMBOX_BLOB_HDR_SIZE, &clen, (const Bytef *)msg, len, 6);
	} else if (codec == LMBOX_CODEC_DEFLATE_DICT1) {
		z_stream zs;

		memset(&zs, 0, sizeof(zs));
		if (deflateInit(&zs, 6) != Z_OK ||
		    deflateSetDictionary(&zs, lmbox_dict1, (uInt)lmbox_dict1_size) != Z_OK)
			exit(1);
		zs.next_in = (Bytef *)(uintptr_t)msg;
		zs.avail_in = (uInt)len;
		zs.next_out = buf + LMBOX_BLOB_HDR_SIZE;
		zs.avail_out = (uInt)clen;
		if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
			exit(1);
		clen = zs.total_out;
		deflateEnd(&zs);
	} else {
		memcpy(buf + LMBOX_BLOB_HDR_SIZE, msg, len);
		clen = len;
	}
	hdr.codec = codec;
	hdr.phys_size = len;
	hdr.stored_size = clen;
	hdr.checksum = (uint32_t)crc32(0, (const Bytef *)msg, len);
	lmbox_blob_hdr_encode(&hdr, buf);
	put(dir, name, 0xff, buf, LMBOX_BLOB_HDR_SIZE + clen);
}

int main(int argc, char **argv)
{
	char rec[4096], body[1024];
	const char *base = argc > 1 ? argv[1] : "tests/fuzz/corpus";
	struct lmbox_folder_info fi;
	struct lmbox_msg_meta m;
	struct lmbox_seg_rec sr = { 0, 3, 12345, 9000 };
	struct lmbox_reclaim_rec rr = { LMBOX_RECLAIM_PUNCH, 4096 };
	struct lmbox_blob_hdr bh = { LMBOX_CODEC_DEFLATE, 100, 60, 0xdeadbeef };
	struct lmbox_seg_hdr sh = { LMBOX_SEG_VERSION, 7, 1700000000 };
	static const char kws[] = "$Junk\0NonJunk\0";
	const char *msg = "From: a@example.org\r\nSubject: seed\r\n\r\nbody line\nbare lf\r\n.dot\r\n";

	snprintf(body, sizeof(body), "%s/fuzz-records", base);
	memset(&fi, 0, sizeof(fi));
	fi.id = 1; fi.uidvalidity = 1700000000; fi.next_uid = 42; fi.count = 41;
	fi.vsize_total = 123456; fi.psize_total = 120000; fi.change_counter = 9;
	strcpy(fi.name, "INBOX/Sub folder");
	lmbox_folder_encode(&fi, (unsigned char *)rec);
	put(body, "folder", 0, rec, lmbox_folder_encoded_size(&fi));

	memset(&m, 0, sizeof(m));
	m.uid = 5; m.pop3_order = 2; m.flags = LMBOX_FLAG_SEEN; m.codec = 1;
	m.received_date = 1700000000; m.save_date = 1700000001;
	m.phys_size = 1000; m.virt_size = 1010; m.stored_size = 600;
	m.checksum = 0x12345678; m.seg_id = 1; m.seg_offset = 64;
	m.uidl = "00000005655E3A00"; m.keywords = kws; m.kw_count = 2;
	lmbox_msg_encode(&m, (unsigned char *)rec);
	put(body, "msg", 1, rec, lmbox_msg_encoded_size(&m));
	m.kw_count = 0; m.keywords = NULL; m.uidl = "x";
	lmbox_msg_encode(&m, (unsigned char *)rec);
	put(body, "msg-nokw", 1, rec, lmbox_msg_encoded_size(&m));
	m.codec = LMBOX_CODEC_DEFLATE_DICT1;
	lmbox_msg_encode(&m, (unsigned char *)rec);
	put(body, "msg-dict1", 1, rec, lmbox_msg_encoded_size(&m));

	lmbox_seg_rec_encode(&sr, (unsigned char *)rec);
	put(body, "segrec", 2, rec, LMBOX_SEG_REC_SIZE);
	lmbox_reclaim_rec_encode(&rr, (unsigned char *)rec);
	put(body, "reclaim", 3, rec, LMBOX_RECLAIM_REC_SIZE);
	lmbox_blob_hdr_encode(&bh, (unsigned char *)rec);
	put(body, "blobhdr", 4, rec, LMBOX_BLOB_HDR_SIZE);
	lmbox_seg_hdr_encode(&sh, (unsigned char *)rec);
	put(body, "seghdr", 5, rec, LMBOX_SEG_HDR_SIZE);
	lmbox_msg_key_encode((unsigned char *)rec, 1, 5);
	put(body, "msgkey", 6, rec, 8);

	snprintf(body, sizeof(body), "%s/fuzz-body", base);
	blob(body, "deflate", msg, LMBOX_CODEC_DEFLATE);
	blob(body, "raw", msg, LMBOX_CODEC_RAW);
	blob(body, "empty", "", LMBOX_CODEC_DEFLATE);
	blob(body, "deflate-dict1", msg, LMBOX_CODEC_DEFLATE_DICT1);
	blob(body, "empty-dict1", "", LMBOX_CODEC_DEFLATE_DICT1);
	return 0;
}
