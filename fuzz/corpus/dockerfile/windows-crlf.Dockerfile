# escape=`
# syntax=docker/dockerfile:1
FROM mcr.microsoft.com/windows/servercore:ltsc2022 AS `
  base
RUN dir c:\ `
  && echo done
FROM base
