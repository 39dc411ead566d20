module gs

go 1.26
