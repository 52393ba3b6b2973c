/*
 * lmbox-format.c: encoders and decoders of every on-disk structure (see
 * lmbox-format.h and docs/design.md).  Pure functions of their arguments:
 * no store, no LMDB, no I/O, so they can be fuzzed in isolation.  Decoders
 * return 0 or LMBOX_ERR_CORRUPT and never read outside (buf, len).
 */
#include <string.h>
#include <zlib.h>

#include "lmbox-format.h"

void lmbox_msg_key_encode(unsigned char key[8], uint32_t folder_id, uint32_t uid)
{
	lmbox_put_be32(key, folder_id);
	lmbox_put_be32(key + 4, uid);
}

int lmbox_msg_key_decode(const void *buf, size_t len, uint32_t *folder_id_r, uint32_t *uid_r)
{
	if (len != 8)
		return LMBOX_ERR_CORRUPT;
	*folder_id_r = lmbox_get_be32(buf);
	*uid_r = lmbox_get_be32((const unsigned char *)buf + 4);
	return *uid_r == 0 || *folder_id_r == 0 ? LMBOX_ERR_CORRUPT : 0;
}

int lmbox_u32_key_decode(const void *buf, size_t len, uint32_t *id_r)
{
	if (len != 4)
		return LMBOX_ERR_CORRUPT;
	*id_r = lmbox_get_be32(buf);
	return 0;
}

void lmbox_reclaim_key_encode(unsigned char key[12], uint32_t seg_id, uint64_t offset)
{
	lmbox_put_be32(key, seg_id);
	lmbox_put_be64(key + 4, offset);
}

int lmbox_reclaim_key_decode(const void *buf, size_t len, uint32_t *seg_id_r, uint64_t *offset_r)
{
	if (len != 12)
		return LMBOX_ERR_CORRUPT;
	*seg_id_r = lmbox_get_be32(buf);
	*offset_r = lmbox_get_be64((const unsigned char *)buf + 4);
	return *seg_id_r == 0 ? LMBOX_ERR_CORRUPT : 0;
}

size_t lmbox_uidl_key_encode(unsigned char *key, uint32_t folder_id, const char *uidl)
{
	size_t len = strlen(uidl);

	if (len > LMBOX_MAX_UIDL_LEN)
		len = LMBOX_MAX_UIDL_LEN;
	lmbox_put_be32(key, folder_id);
	memcpy(key + 4, uidl, len);
	return 4 + len;
}

int lmbox_u32_decode(const void *buf, size_t len, uint32_t *value_r)
{
	if (len != 4)
		return LMBOX_ERR_CORRUPT;
	*value_r = lmbox_get_le32(buf);
	return 0;
}

int lmbox_u64_decode(const void *buf, size_t len, uint64_t *value_r)
{
	if (len != 8)
		return LMBOX_ERR_CORRUPT;
	*value_r = lmbox_get_le64(buf);
	return 0;
}

/* Every byte 0x21..0x7e.  Eight bytes at a time (every login's walk checks
   every UIDL): with ONES = 0x0101..01 and HIGH = 0x8080..80,
   (x - 0x21 * ONES) & ~x & HIGH is nonzero iff some byte is below 0x21, and
   ((x + 1 * ONES) | x) & HIGH iff some byte is above 0x7e (the bytes of a
   word are independent up to the first offending one, which is all a
   yes/no answer needs). */
int lmbox_uidl_valid(const char *s, size_t len)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	size_t i = 0;
	uint64_t x;

	if (len < 1 || len > LMBOX_MAX_UIDL_LEN)
		return 0;
	for (; i + 8 <= len; i += 8) {
		memcpy(&x, s + i, 8);
		if ((((x - 0x21 * ones) & ~x) | ((x + ones) | x)) & high)
			return 0;
	}
	for (; i < len; i++) {
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	}
	return 1;
}

/* ---------------------------------------------------------------- folder */

size_t lmbox_folder_encoded_size(const struct lmbox_folder_info *info)
{
	return LMBOX_FOLDER_REC_FIXED + strlen(info->name);
}

void lmbox_folder_encode(const struct lmbox_folder_info *info, unsigned char *buf)
{
	size_t name_len = strlen(info->name);

	memset(buf, 0, LMBOX_FOLDER_REC_FIXED);
	buf[0] = LMBOX_FOLDER_REC_VERSION;
	lmbox_put_le32(buf + 4, info->id);
	lmbox_put_le32(buf + 8, info->uidvalidity);
	lmbox_put_le32(buf + 12, info->next_uid);
	lmbox_put_le32(buf + 16, info->count);
	lmbox_put_le64(buf + 24, info->vsize_total);
	lmbox_put_le64(buf + 32, info->psize_total);
	lmbox_put_le64(buf + 40, info->change_counter);
	lmbox_put_le64(buf + 48, info->highest_modseq_hint);
	memcpy(buf + 56, info->guid, LMBOX_GUID_SIZE);
	lmbox_put_le16(buf + 72, (uint16_t)name_len);
	memcpy(buf + LMBOX_FOLDER_REC_FIXED, info->name, name_len);
}

int lmbox_folder_decode(const void *buf, size_t len, struct lmbox_folder_info *info_r)
{
	const unsigned char *p = buf;
	size_t name_len;

	if (len < LMBOX_FOLDER_REC_FIXED || p[0] != LMBOX_FOLDER_REC_VERSION)
		return LMBOX_ERR_CORRUPT;
	name_len = lmbox_get_le16(p + 72);
	if (name_len == 0 || name_len > LMBOX_MAX_FOLDER_NAME ||
	    len != LMBOX_FOLDER_REC_FIXED + name_len ||
	    memchr(p + LMBOX_FOLDER_REC_FIXED, '\0', name_len) != NULL)
		return LMBOX_ERR_CORRUPT;
	memset(info_r, 0, sizeof(*info_r));
	info_r->id = lmbox_get_le32(p + 4);
	info_r->uidvalidity = lmbox_get_le32(p + 8);
	info_r->next_uid = lmbox_get_le32(p + 12);
	info_r->count = lmbox_get_le32(p + 16);
	info_r->vsize_total = lmbox_get_le64(p + 24);
	info_r->psize_total = lmbox_get_le64(p + 32);
	info_r->change_counter = lmbox_get_le64(p + 40);
	info_r->highest_modseq_hint = lmbox_get_le64(p + 48);
	memcpy(info_r->guid, p + 56, LMBOX_GUID_SIZE);
	memcpy(info_r->name, p + LMBOX_FOLDER_REC_FIXED, name_len);
	info_r->name[name_len] = '\0';
	if (info_r->id == 0 || info_r->next_uid == 0 || info_r->uidvalidity == 0)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

/* --------------------------------------------------------------- message */

size_t lmbox_keywords_size(const char *keywords, unsigned int kw_count)
{
	size_t size = 0;

	for (unsigned int i = 0; i < kw_count; i++)
		size += strlen(keywords + size) + 1;
	return size;
}

size_t lmbox_msg_encoded_size(const struct lmbox_msg_meta *meta)
{
	return LMBOX_MSG_REC_FIXED + strlen(meta->uidl) + 1 +
		lmbox_keywords_size(meta->keywords, meta->kw_count);
}

void lmbox_msg_encode(const struct lmbox_msg_meta *meta, unsigned char *buf)
{
	size_t uidl_len = strlen(meta->uidl);
	size_t kw_bytes = lmbox_keywords_size(meta->keywords, meta->kw_count);

	memset(buf, 0, LMBOX_MSG_REC_FIXED);
	buf[0] = LMBOX_MSG_REC_VERSION;
	buf[1] = meta->flags;
	buf[2] = meta->codec;
	buf[3] = (uint8_t)uidl_len;
	lmbox_put_le32(buf + 4, meta->pop3_order);
	lmbox_put_le64(buf + 8, (uint64_t)meta->received_date);
	lmbox_put_le64(buf + 16, (uint64_t)meta->save_date);
	lmbox_put_le64(buf + 24, (uint64_t)meta->pop3_first_retr);
	lmbox_put_le64(buf + 32, meta->phys_size);
	lmbox_put_le64(buf + 40, meta->virt_size);
	lmbox_put_le64(buf + 48, meta->stored_size);
	lmbox_put_le32(buf + 56, meta->checksum);
	lmbox_put_le32(buf + 60, meta->seg_id);
	lmbox_put_le64(buf + 64, meta->seg_offset);
	memcpy(buf + LMBOX_MSG_REC_GUID_OFFSET, meta->guid, LMBOX_GUID_SIZE);
	lmbox_put_le16(buf + 88, (uint16_t)meta->kw_count);
	lmbox_put_le16(buf + 90, (uint16_t)kw_bytes);
	memcpy(buf + LMBOX_MSG_REC_FIXED, meta->uidl, uidl_len + 1);
	if (kw_bytes > 0)
		memcpy(buf + LMBOX_MSG_REC_FIXED + uidl_len + 1, meta->keywords, kw_bytes);
}

int lmbox_msg_decode_guid(const void *buf, size_t len, uint8_t guid_r[LMBOX_GUID_SIZE])
{
	const unsigned char *p = buf;

	if (len < LMBOX_MSG_REC_FIXED || p[0] != LMBOX_MSG_REC_VERSION)
		return LMBOX_ERR_CORRUPT;
	memcpy(guid_r, p + LMBOX_MSG_REC_GUID_OFFSET, LMBOX_GUID_SIZE);
	return 0;
}

int lmbox_msg_decode(const void *buf, size_t len, struct lmbox_msg_meta *meta_r)
{
	const unsigned char *p = buf, *kw;
	size_t uidl_len, kw_bytes;
	unsigned int kw_count, nuls = 0;

	if (len < LMBOX_MSG_REC_FIXED || p[0] != LMBOX_MSG_REC_VERSION)
		return LMBOX_ERR_CORRUPT;
	uidl_len = p[3];
	kw_count = lmbox_get_le16(p + 88);
	kw_bytes = lmbox_get_le16(p + 90);
	if (len != LMBOX_MSG_REC_FIXED + uidl_len + 1 + kw_bytes)
		return LMBOX_ERR_CORRUPT;
	if (!lmbox_uidl_valid((const char *)p + LMBOX_MSG_REC_FIXED, uidl_len) ||
	    p[LMBOX_MSG_REC_FIXED + uidl_len] != '\0')
		return LMBOX_ERR_CORRUPT;
	/* keywords: exactly kw_count non-empty NUL-terminated strings */
	kw = p + LMBOX_MSG_REC_FIXED + uidl_len + 1;
	if ((kw_count == 0) != (kw_bytes == 0) ||
	    (kw_bytes > 0 && (kw[kw_bytes - 1] != '\0' || kw[0] == '\0')))
		return LMBOX_ERR_CORRUPT;
	for (size_t i = 0; i < kw_bytes; i++) {
		if (kw[i] != '\0')
			continue;
		nuls++;
		if (i + 1 < kw_bytes && kw[i + 1] == '\0')
			return LMBOX_ERR_CORRUPT;
	}
	if (nuls != kw_count)
		return LMBOX_ERR_CORRUPT;

	memset(meta_r, 0, sizeof(*meta_r));
	meta_r->flags = p[1];
	meta_r->codec = p[2];
	meta_r->pop3_order = lmbox_get_le32(p + 4);
	meta_r->received_date = (int64_t)lmbox_get_le64(p + 8);
	meta_r->save_date = (int64_t)lmbox_get_le64(p + 16);
	meta_r->pop3_first_retr = (int64_t)lmbox_get_le64(p + 24);
	meta_r->phys_size = lmbox_get_le64(p + 32);
	meta_r->virt_size = lmbox_get_le64(p + 40);
	meta_r->stored_size = lmbox_get_le64(p + 48);
	meta_r->checksum = lmbox_get_le32(p + 56);
	meta_r->seg_id = lmbox_get_le32(p + 60);
	meta_r->seg_offset = lmbox_get_le64(p + 64);
	memcpy(meta_r->guid, p + LMBOX_MSG_REC_GUID_OFFSET, LMBOX_GUID_SIZE);
	meta_r->uidl = (const char *)p + LMBOX_MSG_REC_FIXED;
	meta_r->kw_count = kw_count;
	meta_r->keywords = kw_count > 0 ? (const char *)kw : "";

	if ((meta_r->flags & ~LMBOX_FLAGS_MASK) != 0 ||
	    meta_r->codec > LMBOX_CODEC_MAX ||
	    meta_r->phys_size > LMBOX_MAX_MESSAGE_SIZE ||
	    meta_r->virt_size < meta_r->phys_size ||
	    meta_r->virt_size > 2 * meta_r->phys_size ||
	    meta_r->stored_size > 2 * LMBOX_MAX_MESSAGE_SIZE ||
	    (meta_r->codec == LMBOX_CODEC_RAW && meta_r->stored_size != meta_r->phys_size) ||
	    meta_r->seg_id == 0 || meta_r->seg_offset < LMBOX_SEG_HDR_SIZE)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

/* --------------------------------------------------------------- segment */

void lmbox_seg_rec_encode(const struct lmbox_seg_rec *rec, unsigned char buf[LMBOX_SEG_REC_SIZE])
{
	memset(buf, 0, LMBOX_SEG_REC_SIZE);
	buf[0] = LMBOX_SEG_REC_VERSION;
	buf[1] = rec->flags;
	lmbox_put_le32(buf + 4, rec->live_count);
	lmbox_put_le64(buf + 8, rec->tail);
	lmbox_put_le64(buf + 16, rec->live_bytes);
}

int lmbox_seg_rec_decode(const void *buf, size_t len, struct lmbox_seg_rec *rec_r)
{
	const unsigned char *p = buf;

	if (len != LMBOX_SEG_REC_SIZE || p[0] != LMBOX_SEG_REC_VERSION ||
	    (p[1] & ~LMBOX_SEG_SEALED) != 0)
		return LMBOX_ERR_CORRUPT;
	rec_r->flags = p[1];
	rec_r->live_count = lmbox_get_le32(p + 4);
	rec_r->tail = lmbox_get_le64(p + 8);
	rec_r->live_bytes = lmbox_get_le64(p + 16);
	if (rec_r->tail < LMBOX_SEG_HDR_SIZE ||
	    rec_r->live_bytes > rec_r->tail - LMBOX_SEG_HDR_SIZE)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

void lmbox_reclaim_rec_encode(const struct lmbox_reclaim_rec *rec, unsigned char buf[LMBOX_RECLAIM_REC_SIZE])
{
	memset(buf, 0, LMBOX_RECLAIM_REC_SIZE);
	buf[0] = LMBOX_RECLAIM_REC_VERSION;
	buf[1] = rec->kind;
	lmbox_put_le64(buf + 8, rec->len);
}

int lmbox_reclaim_rec_decode(const void *buf, size_t len, struct lmbox_reclaim_rec *rec_r)
{
	const unsigned char *p = buf;

	if (len != LMBOX_RECLAIM_REC_SIZE || p[0] != LMBOX_RECLAIM_REC_VERSION ||
	    (p[1] != LMBOX_RECLAIM_PUNCH && p[1] != LMBOX_RECLAIM_UNLINK))
		return LMBOX_ERR_CORRUPT;
	rec_r->kind = p[1];
	rec_r->len = lmbox_get_le64(p + 8);
	if (rec_r->len > (1ULL << 62))
		return LMBOX_ERR_CORRUPT;
	return 0;
}

void lmbox_pending_rec_encode(unsigned char buf[LMBOX_PENDING_REC_SIZE])
{
	memset(buf, 0, LMBOX_PENDING_REC_SIZE);
	buf[0] = LMBOX_PENDING_REC_VERSION;
}

int lmbox_pending_rec_decode(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	if (len != LMBOX_PENDING_REC_SIZE || p[0] != LMBOX_PENDING_REC_VERSION ||
	    p[1] != 0 || p[2] != 0 || p[3] != 0)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

void lmbox_blob_rec_encode(const struct lmbox_blob_rec *rec, unsigned char buf[LMBOX_BLOB_REC_SIZE])
{
	memset(buf, 0, LMBOX_BLOB_REC_SIZE);
	buf[0] = LMBOX_BLOB_REC_VERSION;
	lmbox_put_le32(buf + 4, rec->folder_id);
	lmbox_put_le32(buf + 8, rec->uid);
	lmbox_put_le64(buf + 16, rec->len);
}

int lmbox_blob_rec_decode(const void *buf, size_t len, struct lmbox_blob_rec *rec_r)
{
	const unsigned char *p = buf;

	if (len != LMBOX_BLOB_REC_SIZE || p[0] != LMBOX_BLOB_REC_VERSION)
		return LMBOX_ERR_CORRUPT;
	rec_r->folder_id = lmbox_get_le32(p + 4);
	rec_r->uid = lmbox_get_le32(p + 8);
	rec_r->len = lmbox_get_le64(p + 16);
	if (rec_r->folder_id == 0 || rec_r->uid == 0 || rec_r->len < LMBOX_BLOB_HDR_SIZE ||
	    rec_r->len > LMBOX_BLOB_HDR_SIZE + 2 * LMBOX_MAX_MESSAGE_SIZE)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

/* ------------------------------------------------------- file headers */

void lmbox_blob_hdr_encode(const struct lmbox_blob_hdr *hdr, unsigned char buf[LMBOX_BLOB_HDR_SIZE])
{
	memcpy(buf, LMBOX_BLOB_MAGIC, 4);
	buf[4] = LMBOX_BLOB_VERSION;
	buf[5] = hdr->codec;
	lmbox_put_le16(buf + 6, LMBOX_BLOB_HDR_SIZE);
	lmbox_put_le64(buf + 8, hdr->phys_size);
	lmbox_put_le64(buf + 16, hdr->stored_size);
	lmbox_put_le32(buf + 24, hdr->checksum);
	lmbox_put_le32(buf + 28, (uint32_t)crc32(0, buf, 28));
}

int lmbox_blob_hdr_decode(const void *buf, size_t len, struct lmbox_blob_hdr *hdr_r)
{
	const unsigned char *p = buf;

	if (len < LMBOX_BLOB_HDR_SIZE || memcmp(p, LMBOX_BLOB_MAGIC, 4) != 0 ||
	    p[4] != LMBOX_BLOB_VERSION || p[5] > LMBOX_CODEC_MAX ||
	    lmbox_get_le16(p + 6) != LMBOX_BLOB_HDR_SIZE ||
	    lmbox_get_le32(p + 28) != (uint32_t)crc32(0, p, 28))
		return LMBOX_ERR_CORRUPT;
	hdr_r->codec = p[5];
	hdr_r->phys_size = lmbox_get_le64(p + 8);
	hdr_r->stored_size = lmbox_get_le64(p + 16);
	hdr_r->checksum = lmbox_get_le32(p + 24);
	if (hdr_r->phys_size > LMBOX_MAX_MESSAGE_SIZE ||
	    hdr_r->stored_size > 2 * LMBOX_MAX_MESSAGE_SIZE)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

void lmbox_seg_hdr_encode(const struct lmbox_seg_hdr *hdr, unsigned char buf[LMBOX_SEG_HDR_SIZE])
{
	memset(buf, 0, LMBOX_SEG_HDR_SIZE);
	memcpy(buf, LMBOX_SEG_MAGIC, 8);
	lmbox_put_le32(buf + 8, hdr->version);
	lmbox_put_le32(buf + 12, hdr->seg_id);
	lmbox_put_le64(buf + 16, (uint64_t)hdr->created);
	lmbox_put_le32(buf + 60, (uint32_t)crc32(0, buf, 60));
}

int lmbox_seg_hdr_decode(const void *buf, size_t len, struct lmbox_seg_hdr *hdr_r)
{
	const unsigned char *p = buf;

	if (len < LMBOX_SEG_HDR_SIZE || memcmp(p, LMBOX_SEG_MAGIC, 8) != 0 ||
	    lmbox_get_le32(p + 60) != (uint32_t)crc32(0, p, 60))
		return LMBOX_ERR_CORRUPT;
	hdr_r->version = lmbox_get_le32(p + 8);
	hdr_r->seg_id = lmbox_get_le32(p + 12);
	hdr_r->created = (int64_t)lmbox_get_le64(p + 16);
	if (hdr_r->version != LMBOX_SEG_VERSION || hdr_r->seg_id == 0)
		return LMBOX_ERR_CORRUPT;
	return 0;
}

size_t lmbox_dict_rec_size(size_t dict_len)
{
	return LMBOX_DICT_REC_FIXED + 2 * dict_len;
}

void lmbox_dict_rec_encode(const void *dict, size_t dict_len, unsigned char *buf)
{
	uint32_t crc = (uint32_t)crc32(0, dict, (uInt)dict_len);

	memset(buf, 0, 4);
	buf[0] = LMBOX_DICT_REC_VERSION;
	lmbox_put_le32(buf + 4, (uint32_t)dict_len);
	lmbox_put_le32(buf + 8, crc);
	lmbox_put_le32(buf + 12, crc);
	memcpy(buf + LMBOX_DICT_REC_FIXED, dict, dict_len);
	memcpy(buf + LMBOX_DICT_REC_FIXED + dict_len, dict, dict_len);
}

int lmbox_dict_rec_decode(const void *buf, size_t len, uint32_t id,
			  const unsigned char **dict_r, size_t *dict_len_r, bool *damaged_r)
{
	const unsigned char *p = buf;
	size_t n;

	*damaged_r = false;
	if (len < LMBOX_DICT_REC_FIXED || p[0] != LMBOX_DICT_REC_VERSION)
		return LMBOX_ERR_CORRUPT;
	n = lmbox_get_le32(p + 4);
	if (n == 0 || n > LMBOX_SDICT_MAX || len != lmbox_dict_rec_size(n))
		return LMBOX_ERR_CORRUPT;
	for (unsigned int copy = 0; copy < 2; copy++) {
		const unsigned char *d = p + LMBOX_DICT_REC_FIXED + copy * n;

		if ((uint32_t)crc32(0, d, (uInt)n) == lmbox_get_le32(p + 8 + 4 * copy) &&
		    (uint32_t)adler32(adler32(0, NULL, 0), d, (uInt)n) == id) {
			*dict_r = d;
			*dict_len_r = n;
			return 0;
		}
		*damaged_r = true;
	}
	return LMBOX_ERR_CORRUPT;
}

size_t lmbox_dict_file_size(size_t dict_len)
{
	return LMBOX_DICT_FILE_HDR + dict_len;
}

void lmbox_dict_file_encode(const void *dict, size_t dict_len, uint32_t id, unsigned char *buf)
{
	memcpy(buf, LMBOX_DICT_FILE_MAGIC, 8);
	lmbox_put_le32(buf + 8, LMBOX_DICT_FILE_VERSION);
	lmbox_put_le32(buf + 12, (uint32_t)dict_len);
	lmbox_put_le32(buf + 16, id);
	lmbox_put_le32(buf + 20, (uint32_t)crc32(0, dict, (uInt)dict_len));
	memcpy(buf + LMBOX_DICT_FILE_HDR, dict, dict_len);
}

int lmbox_dict_file_decode(const void *buf, size_t len, uint32_t id,
			   const unsigned char **dict_r, size_t *dict_len_r)
{
	const unsigned char *p = buf, *d;
	size_t n;

	if (len < LMBOX_DICT_FILE_HDR || memcmp(p, LMBOX_DICT_FILE_MAGIC, 8) != 0 ||
	    lmbox_get_le32(p + 8) != LMBOX_DICT_FILE_VERSION || lmbox_get_le32(p + 16) != id)
		return LMBOX_ERR_CORRUPT;
	n = lmbox_get_le32(p + 12);
	if (n == 0 || n > LMBOX_SDICT_MAX || len != lmbox_dict_file_size(n))
		return LMBOX_ERR_CORRUPT;
	d = p + LMBOX_DICT_FILE_HDR;
	if ((uint32_t)crc32(0, d, (uInt)n) != lmbox_get_le32(p + 20) ||
	    (uint32_t)adler32(adler32(0, NULL, 0), d, (uInt)n) != id)
		return LMBOX_ERR_CORRUPT;
	*dict_r = d;
	*dict_len_r = n;
	return 0;
}
