# CRC-8 as Sensirion (SCD4x) and Aosong (AHT20) frame their data words, and as
# the kit identity EEPROM seals its record: polynomial 0x31 (x^8+x^5+x^4+1),
# initial value 0xFF, no reflection, no final XOR (CRC-8/NRSC-5; 0xBEEF ->
# 0x92). One small module so a driver that needs it does not load another
# driver. Bitwise rather than a 256-byte table: frames are 3 to 37 bytes and
# read every few seconds, RAM is the scarcer resource.


def crc8(buf, start=0, end=-1):
    """CRC of buf[start:end] (end -1: to the end), without slicing."""
    if end < 0:
        end = len(buf)
    crc = 0xFF
    for i in range(start, end):
        crc ^= buf[i]
        for _ in range(8):
            # 0x131: the polynomial with x^8, which also clears the bit
            # shifted out, so crc stays a byte without masking.
            crc = crc << 1 ^ 0x131 if crc & 0x80 else crc << 1
    return crc
