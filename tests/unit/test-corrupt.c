/*
 * test-corrupt: damaged segment files are reported, never crash and never
 * hand out wrong bytes as good: a flipped bit in a body gives
 * LMBOX_ERR_CHECKSUM or LMBOX_ERR_CORRUPT, a damaged blob header or a
 * truncated or missing segment LMBOX_ERR_CORRUPT; a body expunged under a
 * reader is LMBOX_ERR_NOTFOUND.  lmbox_check finds each.
 */
#include <fcntl.h>

#include "lmbox-format.h"
#include "test-common.h"

static uint32_t folder;

static void seg_file(const struct lmbox_msg_meta *meta, char *buf, size_t size)
{
	snprintf(buf, size, "%s/seg/%08X", test_path("corrupt"), meta->seg_id);
}

static void flip_byte(const struct lmbox_msg_meta *meta, uint64_t offset, unsigned char mask)
{
	char path[600];
	unsigned char c;
	int fd;

	seg_file(meta, path, sizeof(path));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pread(fd, &c, 1, (off_t)offset) == 1);
	c ^= mask;
	CHECK(pwrite(fd, &c, 1, (off_t)offset) == 1);
	close(fd);
}

static int read_body(struct lmbox_store *store, const struct lmbox_msg_meta *meta)
{
	unsigned char *data;
	size_t size;
	int ret = lmbox_body_read_all(store, meta, &data, &size);

	if (ret == 0)
		free(data);
	return ret;
}

/* A flipped bit anywhere in a body's stored bytes is an error, and the
 * body reads fine again once it is flipped back.  The one exception: bits
 * that mean nothing (the padding after a stored deflate block's header,
 * which codec 3 gets for random data) may give the same bytes back, never
 * others. */
static void check_every_stored_byte(struct lmbox_store *store, const struct lmbox_msg_meta *meta)
{
	unsigned char *good, *data;
	size_t good_size, size;
	unsigned int same = 0;
	int ret;

	CHECK_OK(store, lmbox_body_read_all(store, meta, &good, &good_size));
	for (uint64_t off = 0; off < meta->stored_size; off++) {
		flip_byte(meta, meta->seg_offset + 32 + off, 0x10);
		ret = lmbox_body_read_all(store, meta, &data, &size);
		if (ret == 0) {
			CHECK(size == good_size && memcmp(data, good, size) == 0);
			free(data);
			same++;
		} else {
			CHECK(ret == LMBOX_ERR_CHECKSUM || ret == LMBOX_ERR_CORRUPT);
		}
		flip_byte(meta, meta->seg_offset + 32 + off, 0x10);
	}
	CHECK(same <= 2 + meta->stored_size / 65536);
	CHECK_OK(store, read_body(store, meta));
	free(good);
}

static void get_meta(struct lmbox_store *store, uint32_t uid, struct lmbox_reader **reader,
		     struct lmbox_msg_meta *meta)
{
	CHECK_OK(store, lmbox_reader_begin(store, reader));
	CHECK_OK(store, lmbox_reader_msg(*reader, folder, uid, meta));
}

static void count_report(void *context, const char *line)
{
	(void)line;
	(*(int *)context)++;
}

int main(void)
{
	struct lmbox_store *store;
	struct lmbox_reader *reader;
	struct lmbox_msg_meta meta;
	struct lmbox_txn *txn;
	char body[4000], path[600];
	uint32_t uid_deflate[8], uid_raw, uid_old;
	int ret, lines;

	test_init();
	store = test_open("corrupt", LMBOX_OPEN_CREATE);
	CHECK_OK(store, lmbox_folder_create(store, "INBOX", 0, NULL, &folder));
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = i % 60 == 59 ? '\n' : (char)('A' + i % 7);
	for (int i = 0; i < 8; i++)
		uid_deflate[i] = test_append(store, folder, body, sizeof(body), NULL);
	uid_raw = test_append(store, folder, "x", 1, NULL); /* tiny: stored raw */
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, NULL, NULL) == 0);

	/* a flipped bit anywhere in the compressed bytes */
	get_meta(store, uid_deflate[0], &reader, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE_DICT1);
	check_every_stored_byte(store, &meta);
	/* and in the blob header */
	for (uint64_t off = 0; off < 32; off++) {
		flip_byte(&meta, meta.seg_offset + off, 0x01);
		CHECK_ERR(store, read_body(store, &meta), LMBOX_ERR_CORRUPT);
		flip_byte(&meta, meta.seg_offset + off, 0x01);
	}
	lmbox_reader_end(&reader);

	/* the same for a codec 1 body (no dictionary), as older versions wrote */
	lmbox_append_force_codec = LMBOX_CODEC_DEFLATE;
	uid_old = test_append(store, folder, body, sizeof(body), NULL);
	lmbox_append_force_codec = 0;
	get_meta(store, uid_old, &reader, &meta);
	CHECK(meta.codec == LMBOX_CODEC_DEFLATE);
	check_every_stored_byte(store, &meta);
	lmbox_reader_end(&reader);

	/* the same for a codec 3 body (base64 stored decoded): its record
	   headers and decoded bytes are covered too */
	{
		static const char b64[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char msg[3000];
		size_t len = (size_t)snprintf(msg, sizeof(msg), "Subject: att\r\n"
			"Content-Transfer-Encoding: base64\r\n\r\n");
		uint32_t uid_b64, v = 12345;

		for (int line = 0; line < 30; line++) {
			for (int i = 0; i < (line < 29 ? 76 : 40); i++) {
				v = v * 1103515245 + 12345;
				msg[len++] = b64[(v >> 16) & 63];
			}
			msg[len++] = '\r';
			msg[len++] = '\n';
		}
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "--end--\r\n");
		uid_b64 = test_append(store, folder, msg, len, NULL);
		get_meta(store, uid_b64, &reader, &meta);
		CHECK(meta.codec == LMBOX_CODEC_DEFLATE_B64);
		check_every_stored_byte(store, &meta);
		lmbox_reader_end(&reader);
	}

	/* raw body: the CRC catches it */
	get_meta(store, uid_raw, &reader, &meta);
	CHECK(meta.codec == LMBOX_CODEC_RAW);
	flip_byte(&meta, meta.seg_offset + 32, 0x04);
	CHECK_ERR(store, read_body(store, &meta), LMBOX_ERR_CHECKSUM);
	CHECK(strstr(lmbox_store_errmsg(store), "CRC") != NULL);
	lmbox_reader_end(&reader);
	lines = 0;
	CHECK(lmbox_check(store, LMBOX_CHECK_BODIES, count_report, &lines) == 1);
	CHECK(lines == 1);
	CHECK(lmbox_check(store, 0, NULL, NULL) == 0); /* headers are fine */
	get_meta(store, uid_raw, &reader, &meta);
	flip_byte(&meta, meta.seg_offset + 32, 0x04);
	lmbox_reader_end(&reader);

	/* a body expunged (and punched) under a reader's snapshot */
	get_meta(store, uid_deflate[3], &reader, &meta);
	CHECK_OK(store, lmbox_txn_begin(store, &txn));
	CHECK_OK(store, lmbox_txn_expunge(txn, folder, uid_deflate[3]));
	CHECK_OK(store, lmbox_txn_commit(&txn, NULL));
	ret = read_body(store, &meta);
	CHECK(ret == LMBOX_ERR_NOTFOUND || ret == 0);
	lmbox_reader_end(&reader);

	/* truncated segment: the last blobs are cut */
	get_meta(store, uid_deflate[7], &reader, &meta);
	seg_file(&meta, path, sizeof(path));
	CHECK(truncate(path, (off_t)(meta.seg_offset + 40)) == 0);
	CHECK_ERR(store, read_body(store, &meta), LMBOX_ERR_CORRUPT);
	CHECK(strstr(lmbox_store_errmsg(store), "seg/") != NULL);
	lmbox_reader_end(&reader);
	CHECK(lmbox_check(store, 0, NULL, NULL) > 0);

	/* missing segment */
	get_meta(store, uid_deflate[1], &reader, &meta);
	CHECK(unlink(path) == 0);
	CHECK_ERR(store, read_body(store, &meta), LMBOX_ERR_CORRUPT);
	lmbox_reader_end(&reader);
	CHECK(lmbox_check(store, 0, NULL, NULL) > 0);
	/* it was the current segment: appends fail until repair */
	{
		struct lmbox_append *append;

		CHECK_OK(store, lmbox_txn_begin(store, &txn));
		CHECK_OK(store, lmbox_append_begin(txn, folder, NULL, &append));
		CHECK_OK(store, lmbox_append_write(append, "new\n", 4));
		CHECK(lmbox_append_finish(&append) == 0);
		CHECK_ERR(store, lmbox_txn_commit(&txn, NULL), LMBOX_ERR_CORRUPT);
		CHECK(strstr(lmbox_store_errmsg(store), "missing") != NULL);
	}
	CHECK(lmbox_check(store, LMBOX_CHECK_REPAIR, NULL, NULL) > 0);
	CHECK(test_append(store, folder, "new\n", 4, NULL) > 0);

	lmbox_store_close(&store);
	return test_exit();
}
