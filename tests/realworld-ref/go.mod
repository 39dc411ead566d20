module github.com/leakhound/leakhound/tests/realworld-ref

go 1.26.0

require github.com/DataDog/gostackparse v0.7.0
