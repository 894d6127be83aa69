#!/bin/sh
# Makes the JPEG decoder's fixtures (libjpeg-turbo's cjpeg/jpegtran 2.1, ffmpeg for the source image):
# a 61x37 frame of ffmpeg's testsrc (odd size: partial MCUs at the right and bottom edges).
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=61x37 -frames:v 1 -pix_fmt rgb24 source.ppm
cjpeg -quality 90 -sample 1x1 source.ppm > 444.jpg
cjpeg -quality 90 -sample 2x1 source.ppm > 422.jpg
cjpeg -quality 90 -sample 2x2 source.ppm > 420.jpg
cjpeg -quality 90 -sample 1x2 source.ppm > 440.jpg
cjpeg -quality 90 -grayscale source.ppm > grey.jpg
cjpeg -quality 75 -sample 2x2 -restart 3B -optimize source.ppm > restart.jpg
cjpeg -quality 90 -progressive source.ppm > progressive.jpg
cjpeg -quality 90 -arithmetic source.ppm > arithmetic.jpg
# Sequential, one scan per component (non-interleaved).
printf '0: 0 63 0 0;\n1: 0 63 0 0;\n2: 0 63 0 0;\n' > scans.txt
jpegtran -scans scans.txt 420.jpg > separate-scans.jpg
rm source.ppm scans.txt
